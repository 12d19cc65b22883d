"""`coa:WORLD`: any team world played by one seat in one context (Chain-of-Agents distillation).

Chain-of-Agents trains one model on whole team traces so that it plays every role of the team
in a single context. `coa:malt-v0` (or `coa:debate-v0?debaters=4`, options after `?` go to the
world) wraps a team world so that its only seat, `team`, plays every role in turn: each turn it
is shown the turn block of the role whose turn it is (headed by the role's name, as in the world),
with that role's rules the first time the role acts, and its reply is that role's. Members asked
at once in the world (a debate round) are asked one after another, in seat order; the world reads
their replies together as before, so no debater's answer depends on another's of the same round
except through the one context. The reward, `info["team"]` (moves by role) and the scorecard are
the world's; the seat's return is the team's score.

Scripted members play it as they play the world (`privileged_view("team")` is the view of the
role whose turn it is), so a teacher's traces are whole-team traces in one conversation:

    palaestra sft OUT --env coa:malt-v0 --agents team_solver --episodes 500

The spec's kind is `conversation`, so a policy trained on it keeps one model session per episode
(the whole trace in its context) by default.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep
from palaestra.core.messages import Message
from palaestra.core.registries import parse_options, split_spec
from palaestra.core.registry import EnvError, EnvSpec, make, spec
from palaestra.envs.teams.base import TeamEnv

SEAT: PlayerId = "team"


class ChainOfAgents:
    """One seat playing every role of a team world; see the module docstring."""

    def __init__(self, *, world: str = "malt-v0", **options: Any) -> None:
        inner = make(world, **options)
        if not isinstance(inner, TeamEnv):
            raise EnvError(f"coa: {world} is not a team world (debate-v0, malt-v0, agentflow-v0, ...)")
        inner.sequential = True  # one role at a time: the seat answers for each in turn
        self.spec: EnvSpec | None = None
        self.players: tuple[PlayerId, ...] = (SEAT,)
        self.world = inner
        self.held: dict[PlayerId, list[Message]] = {}
        self.introduced: list[PlayerId] = []

    @property
    def role(self) -> PlayerId:
        """The role whose turn it is (the world's first seat once the episode is over)."""
        waiting = self.world.core.waiting
        return waiting[0] if waiting else self.world.players[0]

    # ----- Env API ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        self.held, self.introduced = {}, []
        return self._relay(self.world.reset(seed=seed, options=options))

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        if self.world.core.done:
            raise ValueError("coa: the episode is over; call reset() first")
        if set(actions) != {SEAT}:
            raise ValueError(f"coa: expected one action for {SEAT!r}, got {sorted(actions)}")
        return self._relay(self.world.step({self.role: actions[SEAT]}))

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        if self.world.core.done or player != SEAT:
            return []
        return self.world.legal_actions(self.role)

    def sample_action(self, player: PlayerId, rng: Any) -> Action:
        return self.world.sample_action(self.role, rng)

    def privileged_view(self, player: PlayerId) -> Any:
        return self.world.privileged_view(self.role)

    def facts(self, player: PlayerId = SEAT) -> dict[str, Any]:
        """The facts of the role whose turn it is (what scripted members read)."""
        return self.world.facts(self.role)

    def render(self) -> str:
        return self.world.render()

    def close(self) -> None:
        self.world.close()

    def snapshot(self) -> Any:
        return (self.world.snapshot(), copy.deepcopy((self.held, self.introduced)))

    def restore(self, snapshot: Any) -> None:
        world, mine = snapshot
        self.world.restore(world)
        self.held, self.introduced = copy.deepcopy(mine)

    def state_hash(self) -> str:
        mine = repr((self.held, self.introduced))
        return hashlib.sha256((self.world.state_hash() + mine).encode()).hexdigest()

    # ----- internals ---------------------------------------------------------------------------------
    def _relay(self, step: TimeStep) -> TimeStep:
        """The world's step for the one seat: the messages of the role whose turn it is (its rules
        the first time; later roles' system lines as user lines, since a conversation has one
        system message), the others' held until their turn."""
        for role, messages in step.observations.items():
            self.held.setdefault(role, []).extend(messages)
        refused = tuple(
            InvalidAction(SEAT, r.action, f"{r.player}: {r.reason}", r.outcome) for r in step.invalid_actions
        )
        if step.done:
            score = max(step.rewards.values(), default=0.0)
            returns = {SEAT: float(step.info.get("returns", {}).get(self.world.players[0], 0.0))}
            last = self.held.get(self.world.players[0], [])[-1:]
            self.held = {}
            return TimeStep(
                to_act=(), observations={SEAT: last} if last else {}, rewards={SEAT: score},
                terminated=step.terminated, truncated=step.truncated, info={**step.info, "returns": returns},
                invalid_actions=refused,
            )  # fmt: skip
        role = self.role
        messages = self.held.pop(role, [])
        if self.introduced and role not in self.introduced:
            messages = [
                Message(role="user", name=m.name, content=m.content) if m.role == "system" else m
                for m in messages
            ]
        elif role in self.introduced:
            messages = [m for m in messages if m.role != "system"]
        if role not in self.introduced:
            self.introduced.append(role)
        return TimeStep(
            to_act=(SEAT,), observations={SEAT: messages} if messages else {}, invalid_actions=refused
        )


@functools.lru_cache(maxsize=128)
def coa_spec(rest: str) -> EnvSpec:
    """The spec for `coa:WORLD[?key=value&...]`."""
    world, query = split_spec(rest, "?")
    if not world:
        raise EnvError("coa: needs a team world after the colon, e.g. coa:malt-v0")
    options = parse_options(query, where=f"coa:{rest}", error=EnvError)
    inner = spec(world)
    if inner.family != "teams":
        raise EnvError(f"coa: {world} is not a team world (debate-v0, malt-v0, agentflow-v0, ...)")
    ChainOfAgents(world=world, **options)  # bad options fail here, in one line
    return EnvSpec(
        id=f"coa:{rest}",
        entry_point=ChainOfAgents,
        kwargs={"world": world, **options},
        num_players=1,
        kind="conversation",
        family="teams",
        description=f"{world} played by one seat in one context (Chain-of-Agents)",
        scorecard=inner.scorecard,
    )


__all__ = ["SEAT", "ChainOfAgents", "coa_spec"]
