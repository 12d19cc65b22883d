"""Ray executor scaling: episodes/s in process vs 1 and 2 Ray workers, tiny model and scripted.

Rows (same run config, same seeds, only the executor changes):
- `local`: `run_episodes` in this process (asyncio; one `LocalEngine` batches every episode).
- `ray ×1`, `ray ×2`: `executor="ray?workers=N"` on a local Ray cluster; each worker builds its
  own engine from the agent spec and batches its own episodes (`concurrency` per worker).

Workloads:
- `llm:tiny` vs `random` on tic-tac-toe, through `LenientTiny`: an `LLMAgent` over the tiny
  model whose illegal answers become a legal move chosen by a hash of the text (as in
  `rollout_throughput.py`; the untrained model's answers are rarely legal, and the game would
  end at the first one). Games run to their end (5-9 turns) and the model does most of the work.
  The factory is shipped to the workers (pickled by value from this script); each worker's
  agents resolve `tiny` to that worker's own engine.
- `random` vs `random` (`--scripted`): no model at all, so the table shows what Ray itself costs
  per episode (pickling, object store, the driver writing every line).

Ray start-up and each worker's first model load are excluded: every executor plays a warm-up run
first, then its rounds (the table shows medians), then its workers are shut down. Speed-up is
against `local`; efficiency is speed-up / workers. On a 2-core machine
the driver, Ray's own processes and the workers share two cores: 2 workers cannot reach 2x.

torch uses `--threads` intra-op threads in process (default 1, as each Ray worker with 1 CPU).

Run: .venv/bin/python bench/ray_scaling.py [--episodes 512] [--rounds 3] [--concurrency 64]
     [--workers 1,2] [--scripted-episodes 2000] [--no-scripted]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from palaestra.agents.base import AgentView, Decision
from palaestra.core.records import Episode
from palaestra.rollout.runner import RunConfig, run_episodes

ENV_ID = "tic_tac_toe-v0"


class LenientTiny:
    """`LLMAgent("tiny")` whose illegal answers become a legal move chosen by a hash of the text."""

    def __init__(self) -> None:
        from palaestra.agents.llm import LLMAgent

        self.inner = LLMAgent("tiny", template="compact", temperature=1.0)

    async def act(self, view: AgentView) -> Decision:
        import zlib

        decision = await self.inner.act(view)
        legal = list(view.legal_actions or ())
        if legal and str(decision.action).strip() not in legal:
            text = decision.generation.text if decision.generation is not None else str(decision.action)
            return Decision(
                action=legal[zlib.crc32(text.encode()) % len(legal)], generation=decision.generation
            )
        return decision

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Sample:
    seconds: float
    episodes: int
    turns: int


async def one_run(config: RunConfig, factories: dict[str, Any] | None = None) -> Sample:
    turns = 0

    def count(episode: Episode) -> None:
        nonlocal turns
        turns += len(episode.turns)

    started = time.perf_counter()
    summary = await run_episodes(config, None, factories=factories, on_episode=count)
    seconds = time.perf_counter() - started
    if summary.statuses.get("ok", 0) != config.episodes:
        raise RuntimeError(f"{config.executor}: not every episode finished: {summary.statuses}")
    return Sample(seconds, config.episodes, turns)


def measure(
    agents: list[str],
    episodes: int,
    concurrency: int,
    executors: list[str],
    rounds: int,
    factories: dict[str, Any] | None = None,
) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {executor: [] for executor in executors}

    def config(executor: str, count: int, seed: int) -> RunConfig:
        return RunConfig(
            env_id=ENV_ID,
            agents=agents,
            episodes=count,
            seed=seed,
            alternate_seats=True,
            concurrency=concurrency,
            executor=executor,
        )

    async def main() -> None:
        from palaestra.rollout.ray_executor import shutdown_pools

        # One executor after the other: pools of 1 and 2 workers at once would not fit 2 CPUs.
        for executor in executors:
            await one_run(config(executor, min(episodes, 2 * concurrency), 10_000), factories)  # warm-up
            for round_index in range(rounds):
                run = config(executor, episodes, round_index * episodes)
                samples[executor].append(await one_run(run, factories))
            shutdown_pools()

    asyncio.run(main())
    return samples


def table(title: str, samples: dict[str, list[Sample]]) -> Table:
    result = Table(title=title)
    for column in ("executor", "workers", "episodes/s", "turns/s", "speed-up", "efficiency", "rounds (s)"):
        result.add_column(column, justify="left" if column == "executor" else "right")
    rates = {
        executor: statistics.median(s.episodes / s.seconds for s in runs)
        for executor, runs in samples.items()
    }
    base = rates["local"]
    for executor, runs in samples.items():
        workers = 1 if executor == "local" else int(executor.rsplit("=", 1)[1])
        turns = statistics.median(s.turns / s.seconds for s in runs)
        speedup = rates[executor] / base
        result.add_row(
            "local" if executor == "local" else "ray",
            str(workers),
            f"{rates[executor]:,.1f}",
            f"{turns:,.0f}",
            f"{speedup:.2f}x",
            f"{speedup / workers:.0%}",
            " ".join(f"{s.seconds:.2f}" for s in runs),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64, help="episodes in flight per worker")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray cluster")
    parser.add_argument("--scripted-episodes", type=int, default=2000)
    parser.add_argument("--no-scripted", action="store_true")
    args = parser.parse_args()

    import ray
    import torch

    torch.set_num_threads(args.threads)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    executors = ["local", *(f"ray?workers={n}" for n in args.workers.split(","))]
    console = Console(width=120)
    load = os.getloadavg()
    console.print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; "
        f"Ray {ray.__version__}, torch {torch.__version__}, {args.threads} torch thread(s) in process"
    )
    tiny = measure(
        ["tiny", "random"], args.episodes, args.concurrency, executors, args.rounds, {"tiny": LenientTiny}
    )
    console.print(
        table(
            f"tic-tac-toe, llm:tiny (lenient) vs random: {args.episodes} episodes per round, "
            f"{args.concurrency} in flight per worker",
            tiny,
        )
    )
    if not args.no_scripted:
        scripted = measure(
            ["random", "random"], args.scripted_episodes, args.concurrency, executors, args.rounds
        )
        console.print(
            table(f"tic-tac-toe, random vs random: {args.scripted_episodes} episodes per round", scripted)
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
