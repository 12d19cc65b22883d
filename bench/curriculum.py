"""Does a curriculum help the tiny model on a procedural world? And the probes' tables.

Two arms of the shipped config `src/palaestra/train/configs/curriculum_lumina.toml` (the LUMINA list
world with the planning oracle), the same budget each (the same RL steps, episodes per step, cold
start, seeds and evaluation):

- `curriculum`: the config as shipped: depth 1 -> 2 at step 12, max_turns 2 -> 6 by step 24;
- `flat`: the same without `[rollout.curriculum]`: depth 2 and the world's default horizon from step 0.

Each arm trains once per seed (a subprocess each, `--parallel` at a time), then the final greedy
evaluation is read from `eval.jsonl`: success on the training task and on the held-out tasks
(four letters at depth 3; the tree world), pooled over seeds with a 95% Wilson interval, the per-seed rates,
and the mean over seeds with a 95% t interval. The curriculum arm also plays fewer env steps (its
early episodes are short): both totals are printed.

    .venv/bin/python bench/curriculum.py --seeds 0,1,2 --parallel 2   # the full comparison
    .venv/bin/python bench/curriculum.py --smoke                      # one seed, a short budget
    .venv/bin/python bench/curriculum.py --tables                     # the probes' tables (seconds)

`--tables` prints, with scripted agents only: the success of a fixed weak agent as each LUMINA
world's knobs rise and of a random player as XLand's difficulty rises (each falls), and each weak
agent's success under each oracle intervention (the one that lifts it names the skill it lacks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "src" / "palaestra" / "train" / "configs" / "curriculum_lumina.toml"
ARMS = {"curriculum": {}, "flat": {"rollout.curriculum": "{}"}}
"""The arms' overrides; an empty `rollout.curriculum` table is no curriculum."""
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


# ----- training arms --------------------------------------------------------------------------------------
def train(arm: str, seed: int, out: Path, extra: dict[str, str]) -> dict[str, Any]:
    """One arm and seed, in a subprocess; its final evaluation records and its run's totals."""
    folder = out / f"{arm}-seed{seed}"
    args = [sys.executable, "-m", "palaestra", "train", str(CONFIG), "--no-progress", "--start-over"]
    settings = {
        "train.out": str(folder),
        "train.seed": str(seed),
        "model.seed": str(seed),
        **ARMS[arm],
        **extra,
    }
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{arm} seed {seed} failed ({done.returncode}): {done.stderr[-1500:]}")
    evaluations = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()]
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    rl = [m for m in metrics if m.get("phase") == "rl"]
    return {
        "arm": arm,
        "seed": seed,
        "wall_s": wall,
        "steps": len(rl),
        "env_steps": rl[-1]["env_steps"] if rl else 0,
        "final": [e for e in evaluations if e["stage"] == "final"],
        "curve": [e for e in evaluations if e["stage"] not in ("start", "final")],
    }


def wilson(successes: int, n: int) -> tuple[float, float]:
    if not n:
        return 0.0, 1.0
    z, p = 1.96, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{100 * mean:.1f}"
    half = T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{100 * mean:.1f} ± {100 * half:.1f}"


def report(results: list[dict[str, Any]]) -> None:
    envs = sorted({(e["held_out"], e["env_id"]) for r in results for e in r["final"]})
    print("\nfinal greedy evaluation (success %): pooled over seeds (95% Wilson CI), per seed, mean ± 95% t")
    print(f"{'env':44} {'split':9} {'arm':11} {'pooled':22} {'per seed':24} {'mean over seeds'}")
    for held_out, env_id in envs:
        for arm in ARMS:
            runs = [r for r in results if r["arm"] == arm]
            cells = [next(e for e in r["final"] if e["env_id"] == env_id) for r in runs]
            wins, n = sum(c["successes"] for c in cells), sum(c["episodes"] for c in cells)
            low, high = wilson(wins, n)
            rates = [c["successes"] / c["episodes"] if c["episodes"] else 0.0 for c in cells]
            pooled = f"{100 * wins / max(n, 1):.1f} ({100 * low:.1f}-{100 * high:.1f})"
            seeds = ", ".join(f"{100 * r:.0f}" for r in rates)
            split = "held-out" if held_out else "training"
            print(f"{env_id:44} {split:9} {arm:11} {pooled:22} {seeds:24} {t_interval(rates)}")
    for arm in ARMS:
        runs = [r for r in results if r["arm"] == arm]
        illegal = statistics.fmean(c["illegal_rate"] for r in runs for c in r["final"])
        print(
            f"{arm}: {statistics.fmean(r['steps'] for r in runs):.0f} RL steps, "
            f"{statistics.fmean(r['env_steps'] for r in runs):.0f} env steps, "
            f"{statistics.fmean(r['wall_s'] for r in runs):.0f} s wall per seed; "
            f"final illegal {100 * illegal:.1f}%"
        )


def compare(seeds: list[int], parallel: int, out: Path, extra: dict[str, str]) -> None:
    jobs = [(arm, seed) for seed in seeds for arm in ARMS]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        results = list(pool.map(lambda job: train(job[0], job[1], out, extra), jobs))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    report(results)


# ----- the probes' tables (scripted agents) -----------------------------------------------------------------
def _rate(env_id: str, agent: str, episodes: int, **options: Any) -> float:
    from palaestra.agents.base import agent_factory
    from palaestra.rollout.runner import RunConfig, play_in_memory

    config = RunConfig(
        env_id=env_id, env_options=options, agents=[agent], episodes=episodes, seed=9_000, concurrency=64
    )
    played = asyncio.run(play_in_memory(config, {agent: agent_factory(agent)}))
    return sum(e.returns["player_0"] >= 1 for e in played) / len(played)


def tables(episodes: int) -> None:
    import palaestra  # noqa: F401  (registers the worlds)

    knobs = {
        "list": [(3, 1), (4, 2), (5, 3), (6, 5)],
        "tree": [(2, 1), (2, 2), (2, 3), (2, 4)],
        "grid": [(4, 1), (5, 2), (6, 3), (7, 4)],
    }
    print(f"difficulty: success % of weak_planner (blunder 0.5), {episodes} episodes a cell")
    for world, grid in knobs.items():
        rates = [_rate(f"lumina:{world}", "weak_planner", episodes, size=s, depth=d) for s, d in grid]
        cells = [f"size={s} depth={d}: {100 * r:5.1f}" for (s, d), r in zip(grid, rates, strict=True)]
        print(f"  lumina:{world:5} " + " | ".join(cells))
    cells = [
        f"difficulty {d}: {100 * _rate('xland_text-v0', 'random', episodes, difficulty=d, max_turns=8):5.1f}"
        for d in range(1, 6)
    ]
    print("  xland_text-v0 (random, 8 rounds) " + " | ".join(cells))
    print(f"\noracle interventions: success % per weak agent ({episodes} episodes a cell)")
    probes = {"list": (6, 5), "tree": (3, 3), "grid": (6, 3)}
    print(f"  {'world':22} {'agent':13} " + " ".join(f"{o:>8}" for o in ("none", "plan", "state", "history")))
    for world, (size, depth) in probes.items():
        for agent in ("weak_planner", "weak_tracker", "weak_memory"):
            rates = [
                _rate(f"lumina:{world}", agent, episodes, size=size, depth=depth, oracle=o)
                for o in ("none", "plan", "state", "history")
            ]
            print(
                f"  {world + f' size={size} depth={depth}':22} {agent:13} "
                + " ".join(f"{100 * r:8.1f}" for r in rates)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-curriculum")
    parser.add_argument(
        "--smoke", action="store_true", help="one seed, 8 RL steps, small evaluations (about 3 minutes)"
    )
    parser.add_argument("--tables", action="store_true", help="only the scripted agents' tables")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per cell of --tables")
    args = parser.parse_args()
    if args.tables:
        tables(args.episodes)
        return
    extra: dict[str, str] = {}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.smoke:
        seeds = seeds[:1]
        extra = {
            "train.steps": "8",
            "sft.steps": "10",
            "eval.every": "0",
            "eval.final_episodes": "20",
            "train.time_budget_s": "120",
        }
    args.out.mkdir(parents=True, exist_ok=True)
    compare(seeds, args.parallel, args.out, extra)


if __name__ == "__main__":
    main()
