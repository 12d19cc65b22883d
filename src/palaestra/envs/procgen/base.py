"""`ProcgenEnv`: the turn loop every procedural world here shares.

A procedural world is generated from its seed and options at `reset`, and then played in turns:
the env asks one player (turn-based worlds) or several at once (simultaneous ones) for an action
from a list of legal action strings, applies what they chose and tells each player what it saw.
What the base class gives each world:

- observations in the MARS layout: the rules once, then "Information of Turn-k" blocks with a
  GAME STATE and the LEGAL ACTIONS (so `llm:tiny`'s compact template reads the state block);
- lenient parsing: `<answer>swap 0 2</answer>`, `swap 0 2`, `Swap 0 2.` all read as the legal
  action `swap 0 2`; an answer longer than `max_answer_chars` is refused unread;
- the invalid-action policy: a refused answer is reported in `TimeStep.invalid_actions` and the
  player is asked again, up to `retries` times, then the world's do-nothing action is played for
  it (`outcome="default"`): bad output is an observation, never a crash, and every episode ends;
- a structured log of what each player was shown (`ProcgenView.log()`), one record per turn, so
  scripted agents can model one missing skill at a time without parsing text;
- snapshot/restore/state_hash for `check_env` and search (worlds keep their state in `self.world`
  and their own per-episode fields, all deep-copied).
"""

from __future__ import annotations

import copy
import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.answers import last_answer
from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep, action_text
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec

MAX_ANSWER_CHARS = 2000
"""The longest answer a procedural world reads by default (the `max_answer_chars` option)."""
_MAX_ECHO = 500
_LISTED = 40
"""Legal actions named one by one in a refusal; longer lists are cut (the turn block has them all)."""
_PUNCTUATION = "\"'`*[]().!,:;"


def whole_option(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An env option that must be a whole number in [low, high]; EnvError naming it otherwise."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise EnvError(f"{name} must be a whole number {bound}, got {value!r}")
    return value


def choice_option(name: str, value: Any, choices: Sequence[str]) -> str:
    """An env option that must be one of `choices`; EnvError naming them otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise EnvError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def normalize(text: str) -> str:
    """Lower case, outer quotes, brackets and punctuation removed, spaces collapsed."""
    return " ".join(text.strip().strip(_PUNCTUATION).strip().lower().split())


def answer_text(text: str) -> str:
    """The text inside the last `<answer>…</answer>`, or the whole text when there is none."""
    found = last_answer(text)
    return (found if found is not None else text).strip()


@dataclass(slots=True)
class _Core:
    """The base class's share of the episode state (deep-copied by `snapshot`)."""

    done: bool = True
    truncated: bool = False
    waiting: tuple[PlayerId, ...] = ()
    answers: dict[PlayerId, str] = field(default_factory=dict)
    strikes: dict[PlayerId, int] = field(default_factory=dict)
    turns: dict[PlayerId, int] = field(default_factory=dict)
    returns: dict[PlayerId, float] = field(default_factory=dict)
    step_rewards: dict[PlayerId, float] = field(default_factory=dict)
    outbox: dict[PlayerId, list[Message]] = field(default_factory=dict)
    log: dict[PlayerId, list[dict[str, Any]]] = field(default_factory=dict)
    invalid: dict[PlayerId, int] = field(default_factory=dict)
    final_info: dict[str, Any] = field(default_factory=dict)


class ProcgenView:
    """What scripted agents in one seat of a procedural world may read (`privileged_view(player)`).

    Fields and methods:
        env_name: the env's registry id (or class name when built by hand), for messages.
        player: the seat.
        game: the world's short name (`lumina_list`, `xland`, `crafter`, ...).
        log(): what this player was shown, one structured record per turn (see each world's
            docstring for the keys): only what the player may know.
        model: the world's rules as pure functions (`step`, `solve`, ...), for agents that plan
            from what they believe; never the live state.
        solver_action(): the world's solver's action for this seat from the true state (the gold
            policy; reading it is what only the solver agent does).
        true_state(): the true state (for the solver and oracle-style agents only).
    """

    __slots__ = ("_env", "player")

    def __init__(self, env: ProcgenEnv, player: PlayerId) -> None:
        self._env = env
        self.player = player

    @property
    def env_name(self) -> str:
        spec = self._env.spec
        return str(spec.id) if spec is not None else type(self._env).__name__

    @property
    def game(self) -> str:
        return self._env.game

    @property
    def model(self) -> Any:
        return self._env.world_model()

    def log(self) -> list[dict[str, Any]]:
        return self._env.core.log.get(self.player, [])

    def legal(self) -> list[str]:
        return list(self._env.legal_actions(self.player) or [])

    def solver_action(self) -> str:
        return self._env.solver_action(self.player)

    def true_state(self) -> Any:
        return self._env.true_state(self.player)


class ProcgenEnv:
    """Base class of the procedural worlds (see the module docstring).

    Subclasses set `game`, `title` and `idle_action` (the do-nothing action played for a player
    whose retries ran out) and implement `_setup`, `_rules`, `_legal`, `_apply`, `_turn_view`,
    `_over` and `_final_info`, and usually `solver_action` and `world_model`.
    """

    game: str = "procgen"
    title: str = "a procedural world"
    idle_action: str = "wait"

    def __init__(
        self,
        *,
        num_players: int = 1,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        seat_names: Sequence[str] | None = None,
    ) -> None:
        whole_option("num_players", num_players, 1, 8)
        self.retries = whole_option("retries", retries, 0)
        self.max_answer_chars = whole_option("max_answer_chars", max_answer_chars, 1)
        self.spec: EnvSpec | None = None
        self.players: tuple[PlayerId, ...] = (
            tuple(seat_names) if seat_names else tuple(f"player_{i}" for i in range(num_players))
        )
        self.rng = random.Random(0)
        self.core = _Core()
        self.world: Any = None
        self._views = {player: ProcgenView(self, player) for player in self.players}

    # ----- hooks for subclasses ----------------------------------------------------------------------
    def _setup(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        """Generate `self.world` for a new episode."""
        raise NotImplementedError

    def _rules(self) -> str:
        """GAME RULES (built after `_setup`: they may describe the generated world's rules)."""
        raise NotImplementedError

    def _player_info(self, player: PlayerId) -> str:
        return f"You are {player}."

    def _acting(self) -> tuple[PlayerId, ...]:
        """Who must act now (default: every player at once)."""
        return self.players

    def _legal(self, player: PlayerId) -> list[str]:
        """The legal action strings of `player` now (distinct, non-empty while it must act)."""
        raise NotImplementedError

    def _apply(self, actions: dict[PlayerId, str]) -> None:
        """Apply one legal action per acting player (rewards through `_reward`)."""
        raise NotImplementedError

    def _turn_view(self, player: PlayerId) -> tuple[str, dict[str, Any]]:
        """The GAME STATE text `player` is shown now, and the structured record of it."""
        raise NotImplementedError

    def _over(self) -> tuple[bool, bool]:
        """(terminated, truncated) after the last `_apply`."""
        raise NotImplementedError

    def _final_info(self) -> dict[str, Any]:
        """The world's facts for `info` at the end (under the world's own key)."""
        return {}

    def solver_action(self, player: PlayerId) -> str:
        """The gold policy's action for `player` from the true state."""
        return self.idle_action

    def world_model(self) -> Any:
        """The world's rules as pure functions, for scripted agents (None where there are none)."""
        return None

    def true_state(self, player: PlayerId) -> Any:
        return self.world

    def _render(self) -> str:
        return repr(self.world)

    # ----- helpers for subclasses --------------------------------------------------------------------
    def _reward(self, player: PlayerId, amount: float) -> None:
        core = self.core
        core.step_rewards[player] = core.step_rewards.get(player, 0.0) + amount
        core.returns[player] = core.returns.get(player, 0.0) + amount

    def _tell(self, player: PlayerId, text: str, *, speaker: str = "env") -> None:
        self.core.outbox.setdefault(player, []).append(Message(role="user", name=speaker, content=text))

    def _response_instructions(self) -> str:
        return (
            "Think if you like, then give exactly one of the LEGAL ACTIONS inside <answer></answer>, "
            "e.g. <answer>" + self.idle_action + "</answer>."
        )

    # ----- the turn loop ------------------------------------------------------------------------------
    def _prompt(self, player: PlayerId, retry_reason: str = "") -> None:
        core = self.core
        if not retry_reason:
            core.turns[player] += 1
        state, record = self._turn_view(player)
        if not retry_reason:
            core.log.setdefault(player, []).append({"turn": core.turns[player], **record})
        prefix = f"Invalid action: {retry_reason}. Try again.\n" if retry_reason else ""
        legal = self._legal(player)
        self._tell(
            player,
            f"{prefix}Information of Turn-{core.turns[player]}:\nGAME STATE:\n{state}\n"
            f"LEGAL ACTIONS: {', '.join(legal)}",
        )

    def _open_turn(self) -> None:
        core = self.core
        core.waiting = self._acting()
        core.answers = {}
        core.strikes = dict.fromkeys(core.waiting, 0)
        for player in core.waiting:
            self._prompt(player)

    def _parse(self, player: PlayerId, raw: str) -> tuple[str | None, str]:
        if len(raw) > self.max_answer_chars:
            return None, (
                f"the answer has {len(raw)} characters, over the {self.max_answer_chars}-character "
                "limit (max_answer_chars); answer briefly"
            )
        legal = self._legal(player)
        if raw in legal:
            return raw, ""
        candidate = normalize(answer_text(raw))
        by_normal = {normalize(action): action for action in legal}
        if candidate in by_normal:
            return by_normal[candidate], ""
        # A reply that ends with a legal action on its last line ("I swap them.\nswap 0 2").
        last_line = normalize(candidate.rsplit("\n", 1)[-1]) if candidate else ""
        if last_line in by_normal:
            return by_normal[last_line], ""
        shown = ", ".join(legal[:_LISTED]) + (", ..." if len(legal) > _LISTED else "")
        quoted = candidate[:60] if candidate else "(nothing)"
        return None, f"{quoted!r} is not a legal action; give one of: {shown}"

    def _finish(self, truncated: bool) -> None:
        core = self.core
        core.done = True
        core.truncated = truncated
        core.waiting = ()
        returns = {p: core.returns.get(p, 0.0) for p in self.players}
        info = self._final_info()
        core.final_info = {"returns": returns, "refused_answers": dict(core.invalid), **info}
        for player in self.players:
            self._tell(player, f"GAME OVER. Your total: {returns[player]:g}.\nFINAL STATE:\n{self._render()}")

    def _timestep(self, refused: tuple[InvalidAction, ...] = ()) -> TimeStep:
        core = self.core
        observations = {p: messages for p, messages in core.outbox.items() if messages}
        core.outbox = {}
        rewards, core.step_rewards = core.step_rewards, {}
        if core.done:
            return TimeStep(
                to_act=(),
                observations=observations,
                rewards=rewards,
                terminated=not core.truncated,
                truncated=core.truncated,
                info=dict(core.final_info),
                invalid_actions=refused,
            )
        return TimeStep(
            to_act=core.waiting, observations=observations, rewards=rewards, invalid_actions=refused
        )

    # ----- Env API ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        self.rng = random.Random(seed)
        self.core = core = _Core(done=False)
        core.turns = dict.fromkeys(self.players, 0)
        core.returns = dict.fromkeys(self.players, 0.0)
        self._setup(self.rng, options or {})
        rules = self._rules()
        for player in self.players:
            core.outbox[player] = [
                Message(role="system", name="env", content=f"You are playing {self.title}."),
                Message(
                    role="user",
                    name="env",
                    content=(
                        f"GAME RULES:\n{rules}\n\nPLAYER INFORMATION:\n{self._player_info(player)}\n\n"
                        f"RESPONSE INSTRUCTIONS:\n{self._response_instructions()}"
                    ),
                ),
            ]
        terminated, truncated = self._over()
        if terminated or truncated:
            self._finish(truncated)
        else:
            self._open_turn()
        return self._timestep()

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        core = self.core
        if core.done:
            raise ValueError(f"{self.game}: the episode is over; call reset() first")
        if set(actions) != set(core.waiting) or len(actions) != len(core.waiting):
            raise ValueError(
                f"{self.game}: expected one action for each of {list(core.waiting)}, got {sorted(actions)}"
            )
        records: list[InvalidAction] = []
        again: list[tuple[PlayerId, str]] = []
        for player in core.waiting:
            raw = action_text(actions[player])
            parsed, reason = self._parse(player, raw)
            if parsed is not None:
                core.answers[player] = parsed
                continue
            core.invalid[player] = core.invalid.get(player, 0) + 1
            if core.strikes[player] < self.retries:
                core.strikes[player] += 1
                records.append(InvalidAction(player, raw[:_MAX_ECHO], reason, "retry"))
                again.append((player, reason))
            else:
                core.answers[player] = self.idle_action
                records.append(InvalidAction(player, raw[:_MAX_ECHO], reason, "default"))
        if again:
            core.waiting = tuple(player for player, _ in again)
            for player, reason in again:
                self._prompt(player, retry_reason=reason)
            return self._timestep(tuple(records))
        answers, core.answers = core.answers, {}
        self._apply(answers)
        terminated, truncated = self._over()
        if terminated or truncated:
            self._finish(truncated and not terminated)
        else:
            self._open_turn()
        return self._timestep(tuple(records))

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        core = self.core
        if core.done or player not in core.waiting:
            return []
        return self._legal(player)

    def privileged_view(self, player: PlayerId) -> ProcgenView:
        return self._views[player]

    def render(self) -> str:
        return self._render()

    def close(self) -> None:
        return None

    def _state_fields(self) -> dict[str, Any]:
        """Everything an episode changes: the core, the world and a subclass's own fields."""
        skip = {"spec", "players", "rng", "core", "world", "_views"}
        own = {k: v for k, v in vars(self).items() if k not in skip and not k.startswith("_cache")}
        return {"core": self.core, "world": self.world, "own": own}

    def snapshot(self) -> Any:
        return copy.deepcopy((self._state_fields(), self.rng.getstate()))

    def restore(self, snapshot: Any) -> None:
        fields, rng_state = copy.deepcopy(snapshot)
        self.core, self.world = fields["core"], fields["world"]
        for key, value in fields["own"].items():
            setattr(self, key, value)
        self.rng.setstate(rng_state)

    def state_hash(self) -> str:
        fields = self._state_fields()
        payload = repr((fields["core"], fields["world"], sorted(fields["own"].items()), self.rng.getstate()))
        return hashlib.sha256(payload.encode()).hexdigest()


_OPTION_SPLIT = re.compile(r"[+,\s]+")


def parse_oracles(value: Any, known: Sequence[str]) -> tuple[str, ...]:
    """The `oracle` option: `none`, one of `known`, or several joined by `+` (`plan+state`); the
    interventions sorted (a tuple, so that state hashes never depend on set order)."""
    if value is None:
        return ()
    if not isinstance(value, str):
        raise EnvError(f"oracle must be none or {'/'.join(known)} (joined by +), got {value!r}")
    parts = {part for part in _OPTION_SPLIT.split(value.strip().lower()) if part and part != "none"}
    unknown = sorted(parts - set(known))
    if unknown:
        raise EnvError(f"oracle: unknown intervention {unknown[0]!r}; known: none, {', '.join(known)}")
    return tuple(sorted(parts))


def oracle_name(oracles: Sequence[str]) -> str:
    """The canonical name of a set of interventions (`none`, `plan`, `plan+state`)."""
    return "+".join(sorted(oracles)) or "none"


__all__ = [
    "MAX_ANSWER_CHARS",
    "ProcgenEnv",
    "ProcgenView",
    "answer_text",
    "choice_option",
    "normalize",
    "oracle_name",
    "parse_oracles",
    "whole_option",
]
