"""`check_env`: the conformance checker every registered env must pass (cf. Gymnasium's).

It plays seeded random episodes and checks, in order:
1. seeding determinism: the same seed gives the same observations, rewards and ends;
2. turn invariants: `to_act` is empty exactly when the episode is done, names known players,
   and each of them is offered a non-empty list of distinct legal actions (or None: free text);
   observation and reward keys are known players; rewards are finite;
3. invalid actions never raise: junk text, an empty string and a huge string are answered with
   an `invalid_action` in `info`, and the episode goes on or ends by the env's policy;
4. caller errors are ValueErrors: stepping without a player who must act, or after the end;
5. snapshot/restore round trip, when the env supports it: restore gives the same state hash and
   the same continuation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from palaestra.core.env import Action, Env, PlayerId, SupportsSnapshot, TimeStep
from palaestra.core.messages import Message

ActionSampler = Callable[[Env, PlayerId, random.Random], Action]
JUNK_ACTIONS: tuple[str, ...] = ("", "<answer>definitely not a legal move</answer>", "x" * 20_000)


class EnvCheckError(AssertionError):
    """An env broke the contract; the message says which rule and where."""


def random_legal_action(env: Env, player: PlayerId, rng: random.Random) -> Action:
    """A uniformly random legal action, or the env's own sampler for free-text envs."""
    legal = env.legal_actions(player)
    if legal:
        return rng.choice(list(legal))
    sampler = getattr(env, "sample_action", None)
    if sampler is not None:
        return sampler(player, rng)  # type: ignore[no-any-return]
    return "hello"


def _fingerprint(step: TimeStep) -> tuple[Any, ...]:
    observations = tuple(
        (player, tuple(m.content or repr(m.tool_calls) for m in messages))
        for player, messages in sorted(step.observations.items())
    )
    rewards = tuple(sorted((p, round(r, 9)) for p, r in step.rewards.items()))
    return (step.to_act, observations, rewards, step.terminated, step.truncated)


def _check_step(env: Env, step: TimeStep, where: str) -> None:
    players = set(env.players)
    if step.done != (not step.to_act):
        raise EnvCheckError(f"{where}: to_act={step.to_act} but done={step.done}")
    for player in step.to_act:
        if player not in players:
            raise EnvCheckError(f"{where}: to_act names unknown player {player!r}")
        legal = env.legal_actions(player)
        if legal is not None:
            if not legal:
                raise EnvCheckError(f"{where}: {player} must act but has no legal action")
            if len(set(legal)) != len(legal):
                raise EnvCheckError(f"{where}: legal actions of {player} repeat: {legal}")
    for player, messages in step.observations.items():
        if player not in players:
            raise EnvCheckError(f"{where}: observation for unknown player {player!r}")
        for message in messages:
            if not isinstance(message, Message):
                raise EnvCheckError(f"{where}: observation {message!r} is not a Message")
    for player, reward in step.rewards.items():
        if player not in players:
            raise EnvCheckError(f"{where}: reward for unknown player {player!r}")
        if not math.isfinite(reward):
            raise EnvCheckError(f"{where}: reward {reward} for {player} is not finite")


def _play(
    env: Env, seed: int, sampler: ActionSampler, max_steps: int
) -> tuple[list[tuple[Any, ...]], dict[PlayerId, float]]:
    rng = random.Random(seed)
    step = env.reset(seed=seed)
    trace = [_fingerprint(step)]
    totals: dict[PlayerId, float] = {}
    _check_step(env, step, f"seed {seed}, reset")
    for index in range(max_steps):
        if step.done:
            break
        actions = {player: sampler(env, player, rng) for player in step.to_act}
        step = env.step(actions)
        _check_step(env, step, f"seed {seed}, step {index}")
        for player, reward in step.rewards.items():
            totals[player] = totals.get(player, 0.0) + reward
        trace.append(_fingerprint(step))
    return trace, totals


def _expect_value_error(call: Callable[[], Any], what: str) -> None:
    try:
        call()
    except ValueError:
        return
    except Exception as exc:
        raise EnvCheckError(f"{what} raised {type(exc).__name__}, expected ValueError") from exc
    raise EnvCheckError(f"{what} did not raise ValueError")


def check_env(
    env: Env,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    max_steps: int = 2_000,
    sampler: ActionSampler = random_legal_action,
) -> None:
    """Raise `EnvCheckError` if `env` breaks the `Env` contract; return None if it passes."""
    if not env.players:
        raise EnvCheckError("env.players is empty")
    for seed in seeds:
        first, _ = _play(env, seed, sampler, max_steps)
        second, _ = _play(env, seed, sampler, max_steps)
        if first != second:
            diverged = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
            raise EnvCheckError(f"seed {seed}: same seed, different episode (step {diverged})")
        if not (first[-1][3] or first[-1][4]):
            raise EnvCheckError(f"seed {seed}: no end within {max_steps} steps")

    _check_invalid_actions(env, seeds[0])
    _check_caller_errors(env, seeds[0], sampler)
    if isinstance(env, SupportsSnapshot):
        _check_snapshot(env, seeds[0], sampler, max_steps)


def _check_invalid_actions(env: Env, seed: int) -> None:
    for junk in JUNK_ACTIONS:
        step = env.reset(seed=seed)
        for attempt in range(50):
            if step.done:
                break
            where = f"junk action {junk[:20]!r} (attempt {attempt})"
            legal = {p: env.legal_actions(p) for p in step.to_act}
            if any(junk in (options or ()) for options in legal.values()):
                break  # the junk happens to be legal here; nothing to check
            try:
                step = env.step({player: junk for player in step.to_act})
            except Exception as exc:
                raise EnvCheckError(f"{where} raised {type(exc).__name__}: {exc}") from exc
            _check_step(env, step, where)
            if all(options is None for options in legal.values()):
                break  # free-text envs may accept anything
            if "invalid_action" not in step.info:
                raise EnvCheckError(f"{where}: no invalid_action in info")


def _check_caller_errors(env: Env, seed: int, sampler: ActionSampler) -> None:
    rng = random.Random(seed)
    step = env.reset(seed=seed)
    if step.to_act:
        _expect_value_error(lambda: env.step({}), "step() without the players in to_act")
    while not step.done:
        step = env.step({p: sampler(env, p, rng) for p in step.to_act})
    done_actions: Mapping[PlayerId, Action] = {env.players[0]: "anything"}
    _expect_value_error(lambda: env.step(done_actions), "step() after the episode ended")


def _check_snapshot(env: Any, seed: int, sampler: ActionSampler, max_steps: int) -> None:
    rng = random.Random(seed)
    step = env.reset(seed=seed)
    if step.done:
        return
    step = env.step({p: sampler(env, p, rng) for p in step.to_act})
    if step.done:
        return
    saved, saved_hash, saved_rng = env.snapshot(), env.state_hash(), rng.getstate()

    def continuation() -> list[tuple[Any, ...]]:
        trace, current = [], step
        for _ in range(max_steps):
            if current.done:
                break
            current = env.step({p: sampler(env, p, rng) for p in current.to_act})
            trace.append(_fingerprint(current))
        return trace

    first = continuation()
    env.restore(saved)
    if env.state_hash() != saved_hash:
        raise EnvCheckError("restore(snapshot()) did not give back the same state_hash")
    rng.setstate(saved_rng)
    if continuation() != first:
        raise EnvCheckError("after restore, the same actions gave a different continuation")
