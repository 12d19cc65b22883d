"""Web-world throughput: browser steps per second with 1, 4 and 8 episodes in flight, the peak
memory of the process with its Chromium, and gui_graph-v0 env steps per second.

Rows:
- `runner, web_random, N in flight`: `web-v0` through the real runner (`run_episodes`, in memory,
  `concurrency=N`), the random-click agent, each episode `--max-steps` turns. The runner steps
  envs on its event loop, so the episodes' browser work does not overlap: N only changes how
  many pages and sites are open at once (and the memory).
- `threads, N in flight`: N threads each driving its own `web-v0` env with random clicks, the way
  a runner that stepped envs off its loop would: their browser calls overlap in the one Chromium.
- `gui_graph SIZE, env loop`: `gui_graph-v0` driven directly with random legal actions (resets
  included); `gui_graph small, runner`: through the runner with the `random` agent.

Steps are agent turns (env steps). Peak memory is the resident memory of this process and every
process under it (Playwright's driver, Chromium's browser, renderer and utility processes),
sampled every 0.1 s during the cell. Reset costs (a site's database and server, a browser
context and page) are inside the timings: every episode is a fresh one.

Run: .venv/bin/python bench/web_throughput.py [--episodes-per-slot 2] [--max-steps 15] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
import time
from dataclasses import dataclass

import psutil
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Cell:
    how: str
    episodes: int
    steps: int
    seconds: float
    peak_mib: float | None

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


class PeakMemory:
    """Samples the resident memory of this process and its descendants on a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(0.1)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2**20


def runner_cell(in_flight: int, episodes: int, max_steps: int) -> Cell:
    from palaestra.rollout.runner import RunConfig, run_episodes

    config = RunConfig(
        env_id="web-v0",
        agents=["web_random"],
        episodes=episodes,
        concurrency=in_flight,
        env_options={"max_steps": max_steps},
        seed=11,
    )
    steps = 0

    def count(episode: object) -> None:
        nonlocal steps
        steps += episode.num_steps  # type: ignore[attr-defined]

    with PeakMemory() as memory:
        started = time.perf_counter()
        asyncio.run(run_episodes(config, None, on_episode=count))
        seconds = time.perf_counter() - started
    return Cell(f"runner, web_random, {in_flight} in flight", episodes, steps, seconds, memory.mib)


def thread_cell(in_flight: int, episodes: int, max_steps: int) -> Cell:
    from palaestra.envs.web.env import WebEnv
    from palaestra.envs.web.page import CONTROL_ROLES

    counts = [0] * in_flight

    def drive(slot: int) -> None:
        rng = random.Random(slot)
        for number in range(episodes // in_flight):
            env = WebEnv(max_steps=max_steps)
            step = env.reset(seed=slot * 100 + number)
            while not step.done:
                controls = [e for e in env.page.elements if e.role in CONTROL_ROLES]
                step = env.step({"agent": f"click [{rng.choice(controls).pid}]" if controls else "back"})
                counts[slot] += 1
            env.close()

    with PeakMemory() as memory:
        started = time.perf_counter()
        threads = [threading.Thread(target=drive, args=(slot,)) for slot in range(in_flight)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    return Cell(f"threads, {in_flight} in flight", episodes, sum(counts), seconds, memory.mib)


def gui_env_cell(size: str, seconds: float) -> Cell:
    from palaestra.envs.web.gui_graph import GuiGraphEnv

    env = GuiGraphEnv(size)
    rng = random.Random(0)
    episodes = steps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        step = env.reset(seed=episodes)
        while not step.done:
            step = env.step({"agent": rng.choice(env.legal_actions("agent"))})
            steps += 1
        episodes += 1
    return Cell(f"gui_graph {size}, env loop", episodes, steps, time.perf_counter() - started, None)


def gui_runner_cell(episodes: int) -> Cell:
    from palaestra.rollout.runner import RunConfig, run_episodes

    steps = 0

    def count(episode: object) -> None:
        nonlocal steps
        steps += episode.num_steps  # type: ignore[attr-defined]

    config = RunConfig(env_id="gui_graph-v0", agents=["random"], episodes=episodes, seed=1)
    started = time.perf_counter()
    asyncio.run(run_episodes(config, None, on_episode=count))
    return Cell("gui_graph small, runner, random", episodes, steps, time.perf_counter() - started, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes-per-slot", type=int, default=2, help="episodes per episode in flight")
    parser.add_argument("--max-steps", type=int, default=15, help="turns per web episode")
    parser.add_argument("--quick", action="store_true", help="1 and 4 in flight only, runner only")
    args = parser.parse_args()

    from palaestra.envs.web.browser import shared_worker, shutdown

    shared_worker()  # Chromium starts before the clocks do
    cells = []
    flights = (1, 4) if args.quick else (1, 4, 8)
    for in_flight in flights:
        cells.append(runner_cell(in_flight, args.episodes_per_slot * in_flight, args.max_steps))
    if not args.quick:
        for in_flight in flights:
            cells.append(thread_cell(in_flight, args.episodes_per_slot * in_flight, args.max_steps))
    shutdown()
    for size in ("small", "medium", "large"):
        cells.append(gui_env_cell(size, 1.0 if args.quick else 2.0))
    cells.append(gui_runner_cell(500 if args.quick else 2000))

    table = Table(title=f"web throughput ({psutil.cpu_count()} cores)")
    for column in ("how", "episodes", "steps", "seconds", "steps/s", "peak MiB"):
        table.add_column(column, justify="left" if column == "how" else "right")
    for cell in cells:
        table.add_row(
            cell.how,
            str(cell.episodes),
            str(cell.steps),
            f"{cell.seconds:.1f}",
            f"{cell.steps_per_s:,.1f}",
            "-" if cell.peak_mib is None else f"{cell.peak_mib:,.0f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
