"""Service-env throughput: whole episodes per second with the scripted customer, i.e. the
framework's own overhead (no model time), per domain and agent, as a table.

Rows, for each domain:
- `env loop, oracle`: the env driven directly by the oracle and scripted-customer policies
  (`palaestra.envs.service.validation.play`): parsing, tool calls on SQLite, clock, grading.
- `runner, oracle` / `runner, llm:mock` / `runner, random_tool`: the same episodes through the
  real runner (`run_episodes`, in memory, 32 in flight), agents built from their spec strings,
  an `Episode` record per episode. `llm:mock` is the mock model behind the real `LLMAgent`
  (token bookkeeping included); it only ever says "ok", so its episodes run the customer's
  script to the end.

Steps are env steps (every action of either seat, tool calls included). Each cell runs for
`--seconds` (at least one pass over the tasks), after one warm-up pass that loads the domain.

Run: .venv/bin/python bench/service_throughput.py [--seconds 2] [--domains retail,travel,crm]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Cell:
    domain: str
    how: str
    episodes: int
    steps: int
    seconds: float
    mean_reward: float

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.seconds

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def env_loop(domain: str, seconds: float) -> Cell:
    from palaestra.envs.service.env import AGENT, USER, ServiceEnv
    from palaestra.envs.service.scripts import Oracle, ScriptedUser
    from palaestra.envs.service.validation import play

    env = ServiceEnv(domain)
    tasks = env.domain.tasks
    for task in tasks:  # warm-up: gold hashes, caches
        play(env, task, {AGENT: Oracle(task), USER: ScriptedUser(task)})
    episodes = steps = 0
    reward = 0.0
    started = time.perf_counter()
    while True:
        for task in tasks:
            last = play(env, task, {AGENT: Oracle(task), USER: ScriptedUser(task)})
            episodes += 1
            steps += last.info["steps"]
            reward += last.info["reward"]
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return Cell(domain, "env loop, oracle", episodes, steps, elapsed, reward / episodes)


def runner(domain: str, agent: str, seconds: float) -> Cell:
    from palaestra.agents.base import agent_factory
    from palaestra.core.records import Episode
    from palaestra.envs.service.domain import load_domain
    from palaestra.rollout.runner import RunConfig, run_episodes

    count = len(load_domain(domain).tasks)
    factories = {agent: agent_factory(agent), "scripted_user": agent_factory("scripted_user")}
    totals = {"steps": 0, "reward": 0.0}

    def on_episode(episode: Episode) -> None:
        totals["steps"] += episode.num_steps
        totals["reward"] += float(episode.info.get("reward", 0.0))

    def run_pass(callback: Callable[[Episode], None] | None) -> int:
        config = RunConfig(
            env_id=f"{domain}-v0", agents=[agent, "scripted_user"], episodes=count, concurrency=32
        )
        summary = asyncio.run(run_episodes(config, None, factories=factories, on_episode=callback))
        return summary.total

    run_pass(None)  # warm-up
    episodes = 0
    started = time.perf_counter()
    while True:
        episodes += run_pass(on_episode)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return Cell(
                domain,
                f"runner, {agent}",
                episodes,
                int(totals["steps"]),
                elapsed,
                totals["reward"] / episodes,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per cell")
    parser.add_argument("--domains", default="retail,travel,crm")
    args = parser.parse_args()
    console = Console()
    cells: list[Cell] = []
    for domain in args.domains.split(","):
        cells.append(env_loop(domain, args.seconds))
        for agent in ("oracle", "llm:mock", "random_tool"):
            cells.append(runner(domain, agent, args.seconds))
    table = Table(title="service envs: episodes/s with the scripted customer (framework overhead)")
    for column in (
        "domain",
        "driver, agent",
        "episodes",
        "steps/episode",
        "episodes/s",
        "steps/s",
        "mean reward",
    ):
        table.add_column(column, justify="left" if column in ("domain", "driver, agent") else "right")
    for cell in cells:
        table.add_row(
            cell.domain,
            cell.how,
            str(cell.episodes),
            f"{cell.steps / cell.episodes:.1f}",
            f"{cell.episodes_per_s:,.0f}",
            f"{cell.steps_per_s:,.0f}",
            f"{cell.mean_reward:.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
