"""Play one episode: ask the agents in `to_act`, step the env, record everything.

Failures stay inside the episode: an agent that raises marks it `error`, one that takes longer
than the turn timeout (or an episode longer than the episode timeout) marks it `timeout`; the
cause is kept in one line and the turns played so far are kept too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine, Generator, Mapping
from types import CoroutineType
from typing import Any

from palaestra.agents.base import Agent, AgentView, Decision
from palaestra.core.env import Action, Env, PlayerId, TimeStep
from palaestra.core.messages import Message
from palaestra.core.records import SCHEMA_VERSION, Episode, Turn, trusted

_MAX_CAUSE = 300


class _Failure(Exception):
    """Carries an episode's failure status and cause out of the step loop."""

    def __init__(self, status: str, cause: str) -> None:
        super().__init__(cause)
        self.status = status
        self.cause = cause


def decision_seed(episode_seed: int | None, step: int, seat: int) -> int:
    """A per-decision seed: reruns of the same episode seed repeat every scripted choice."""
    return ((episode_seed or 0) * 1_000_003 + step * 64 + seat) & 0x7FFFFFFF


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_CAUSE else line[: _MAX_CAUSE - 3] + "..."


class _Resume:
    """Awaiting it continues a coroutine that was started by hand and is suspended on `pending`
    (what `await coroutine` would have done had it not been started yet)."""

    __slots__ = ("coroutine", "pending")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coroutine = coroutine
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, pending = self.coroutine, self.pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - cancellation included: the coroutine decides
                try:
                    pending = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coroutine.send(sent)
                except StopIteration as done:
                    return done.value


async def _within(awaitable: Awaitable[Any], seconds: float) -> Any:
    """`await awaitable` under a timeout of `seconds`, setting the timer only if it suspends.

    Agents that answer without waiting (scripted agents, the mock model) cannot be interrupted
    by a timeout anyway; for them a timer per turn would be most of the runner's overhead. The
    deadline is taken before the agent starts, as `asyncio.timeout` would.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    if type(awaitable) is not CoroutineType:
        async with asyncio.timeout_at(deadline):
            return await awaitable
    try:
        pending = awaitable.send(None)
    except StopIteration as done:
        return done.value
    # An agent whose own work used up the turn before it first waits is timed out at that wait.
    async with asyncio.timeout_at(deadline):
        return await _Resume(awaitable, pending)


async def _ask(
    agent: Agent, view: AgentView, spec: str, turn_timeout: float | None
) -> tuple[Decision, float]:
    started = time.perf_counter()
    try:
        if turn_timeout is None:
            answer = await agent.act(view)
        else:
            answer = await _within(agent.act(view), turn_timeout)
    except TimeoutError:
        label = f"{view.player} ({spec})"
        raise _Failure("timeout", f"{label} gave no action within {turn_timeout:g}s") from None
    except _Failure:
        raise
    except Exception as exc:
        label = f"{view.player} ({spec})"
        raise _Failure("error", _one_line(f"{label} raised {type(exc).__name__}: {exc}")) from exc
    latency = time.perf_counter() - started
    if isinstance(answer, Decision):
        return answer, latency
    if isinstance(answer, str | Message):
        return Decision(action=answer), latency
    raise _Failure("error", f"{view.player} ({spec}) returned {type(answer).__name__}, not an action")


async def play_episode(
    env: Env,
    agents: Mapping[PlayerId, Agent],
    *,
    episode_id: str,
    seed: int | None,
    env_id: str,
    agent_specs: Mapping[PlayerId, str],
    env_options: Mapping[str, Any] | None = None,
    turn_timeout: float | None = None,
    episode_timeout: float | None = None,
    max_steps: int = 100_000,
    agent_seed: int | None = None,
) -> Episode:
    """Play one episode of `env` with one agent per player; never raises for agent or env faults.

    `agent_seed` seeds the agents' decisions (default: the env seed); episodes that share an env
    seed (GRPO groups) pass different agent seeds so their agents do not repeat each other.
    """
    decisions_seed = seed if agent_seed is None else agent_seed
    started_at = time.time()
    started = time.perf_counter()
    turns: list[Turn] = []
    returns: dict[PlayerId, float] = dict.fromkeys(env.players, 0.0)
    state: dict[str, Any] = {"step": None, "num_steps": 0}

    async def loop() -> None:
        pending: dict[PlayerId, list[Message]] = {p: [] for p in env.players}
        last_turn: dict[PlayerId, Turn] = {}
        turn_counts: dict[PlayerId, int] = dict.fromkeys(env.players, 0)
        seats = {p: i for i, p in enumerate(env.players)}

        def absorb(step: TimeStep) -> None:
            for player, messages in step.observations.items():
                pending[player].extend(messages)
            for player, reward in step.rewards.items():
                returns[player] = returns.get(player, 0.0) + reward
                if player in last_turn:
                    last_turn[player].reward += reward

        try:
            step = env.reset(seed=seed)
        except Exception as exc:
            raise _Failure("error", _one_line(f"env reset raised {type(exc).__name__}: {exc}")) from exc
        state["step"] = step
        absorb(step)
        index = 0
        while not step.done:
            if index >= max_steps:
                raise _Failure("error", f"no end after {max_steps} steps (max_steps)")
            views = {}
            for player in step.to_act:
                views[player] = AgentView(
                    player=player,
                    messages=tuple(pending[player]),
                    legal_actions=env.legal_actions(player),
                    turn=turn_counts[player],
                    step=index,
                    episode_id=episode_id,
                    seed=decision_seed(decisions_seed, index, seats[player]),
                    time=getattr(env, "clock", None),
                    env=env,
                )
            if len(views) == 1:
                ((player, view),) = views.items()
                decisions = {
                    player: await _ask(agents[player], view, agent_specs.get(player, "?"), turn_timeout)
                }
            else:
                results = await asyncio.gather(
                    *(_ask(agents[p], v, agent_specs.get(p, "?"), turn_timeout) for p, v in views.items())
                )
                decisions = dict(zip(views, results, strict=True))
            actions: dict[PlayerId, Action] = {p: d.action for p, (d, _) in decisions.items()}
            try:
                next_step = env.step(actions)
            except Exception as exc:
                raise _Failure("error", _one_line(f"env step raised {type(exc).__name__}: {exc}")) from exc
            step_info = next_step.info
            invalid_by_player = (
                {
                    record.get("player"): record
                    for record in (step_info.get("invalid_actions") or [step_info.get("invalid_action")])
                    if record
                }
                if "invalid_actions" in step_info or "invalid_action" in step_info
                else {}
            )
            for player, (decision, latency) in decisions.items():
                legal = views[player].legal_actions
                # trusted: every field is built right here (see `records.trusted`).
                turn = trusted(
                    Turn,
                    {
                        "step": index,
                        "player": player,
                        "observation": pending[player],
                        "action": decision.action,
                        "legal_actions": list(legal) if legal is not None else None,
                        "invalid": invalid_by_player.get(player),
                        "reward": 0.0,
                        "latency_s": latency,
                        "generation": decision.generation,
                    },
                )
                turns.append(turn)
                last_turn[player] = turn
                pending[player] = []
                turn_counts[player] += 1
            index += 1
            state["num_steps"] = index
            state["step"] = step = next_step
            absorb(step)

    status, cause = "ok", None
    try:
        if episode_timeout is None:
            await loop()
        else:
            async with asyncio.timeout(episode_timeout):
                await loop()
    except _Failure as failure:
        status, cause = failure.status, failure.cause
    except TimeoutError:
        status, cause = "timeout", f"episode ran longer than {episode_timeout:g}s (episode timeout)"
    last: TimeStep | None = state["step"]
    info: dict[str, Any] = {}
    if last is not None and last.done:
        info = {k: v for k, v in last.info.items()}
    return trusted(
        Episode,
        {
            "version": SCHEMA_VERSION,
            "id": episode_id,
            "env_id": env_id,
            "env_options": dict(env_options or {}),
            "seed": seed,
            "agents": dict(agent_specs),
            "turns": turns,
            "returns": returns,
            "status": status,
            "cause": cause,
            "terminated": bool(last and last.terminated),
            "truncated": bool(last and last.truncated),
            "num_steps": state["num_steps"],
            "started_at": started_at,
            "duration_s": time.perf_counter() - started,
            "info": info,
            "weight_version": None,
        },
    )
