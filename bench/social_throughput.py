"""Social env throughput: env steps per second on their own, and whole episodes per second through
the real runner with scripted agents (in memory, nothing written), for every social env.

- env: `reset(seed=i)` then `step` with answers from `check_env`'s sampler (a random legal action,
  or a random short phrase in free-text phases) until the episode ends; counts env steps and
  player decisions (a simultaneous step of five agents is five decisions).
- runner: `run_episodes(RunConfig(...), None)` with the scripted lineup below; every decision goes
  through `play_episode` (agent views, records, per-turn rewards), as in `palaestra run`.

Run: .venv/bin/python bench/social_throughput.py [--seconds 1] [--envs commons-v0,market-v0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from rich.console import Console
from rich.table import Table

from palaestra.core import make, random_legal_action
from palaestra.rollout.runner import RunConfig, run_episodes

LINEUPS: dict[str, list[str]] = {
    "commons-v0": ["sustainable", "greedy", "sustainable", "sustainable", "sustainable"],
    "prisoners_dilemma-v0": ["tit_for_tat", "greedy"],
    "public_goods-v0": ["sustainable", "greedy", "tit_for_tat", "conformist"],
    "ultimatum-v0": ["sustainable", "greedy"],
    "negotiation-v0": ["sustainable", "greedy"],
    "market-v0": ["sustainable", "tit_for_tat", "greedy"],
    "conformity_vote-v0": ["confederate", "confederate", "confederate", "conformist", "sustainable"],
}


def env_rate(env_id: str, seconds: float) -> tuple[float, float]:
    """(env steps/s, decisions/s) with random answers."""
    env = make(env_id)
    rng = random.Random(0)
    steps = decisions = 0
    seed = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        step = env.reset(seed=seed)
        seed += 1
        while not step.done:
            decisions += len(step.to_act)
            step = env.step({p: random_legal_action(env, p, rng) for p in step.to_act})
            steps += 1
    elapsed = time.perf_counter() - started
    return steps / elapsed, decisions / elapsed


def runner_rate(env_id: str, seconds: float) -> tuple[float, float]:
    """(episodes/s, decisions/s) through the runner with the scripted lineup."""
    episodes = decisions = 0
    batch = 50

    def count(episode: object) -> None:
        nonlocal decisions
        decisions += len(episode.turns)  # type: ignore[attr-defined]

    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        config = RunConfig(
            env_id=env_id, agents=LINEUPS[env_id], episodes=batch, seed=episodes, concurrency=8
        )
        asyncio.run(run_episodes(config, None, on_episode=count))
        episodes += batch
    elapsed = time.perf_counter() - started
    return episodes / elapsed, decisions / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per cell")
    parser.add_argument("--envs", default=",".join(LINEUPS), help="comma-separated env ids")
    args = parser.parse_args()
    table = Table(title="social envs: throughput (one process, one core)")
    for column in ("env", "env steps/s", "decisions/s", "runner episodes/s", "runner decisions/s", "lineup"):
        table.add_column(column, justify="left" if column in ("env", "lineup") else "right")
    for env_id in args.envs.split(","):
        steps, decisions = env_rate(env_id, args.seconds)
        episodes, run_decisions = runner_rate(env_id, args.seconds)
        table.add_row(
            env_id,
            f"{steps:,.0f}",
            f"{decisions:,.0f}",
            f"{episodes:,.0f}",
            f"{run_decisions:,.0f}",
            ",".join(LINEUPS[env_id]),
        )
    Console().print(table)


if __name__ == "__main__":
    main()
