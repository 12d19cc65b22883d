"""A learner trained as a team against the same time budget spent training the single agent.

Per seed (`train.seed` and `model.seed`), with the same time budget (`--budget`,
`train.time_budget_s`) and step horizon (`--steps`, `train.steps`, large enough that the budget
stops every run), it trains three runs into `OUT/<arm>/seed<S>/` (reusing finished runs):

- `team-mars`: the shipped teams config (`train/configs/teams.toml`: the tiny model in all three
  seats of `debate-v0` on `largest` at difficulty 1, MARS turn-level advantages per seat);
- `team-flow`: the same with `flow_grpo` (the outcome to every turn, normalized within groups of
  four same-seed episodes: `rollout.group_size = 4`);
- `single`: the same model, cold start and update, alone on the one-seat task
  (`reasoning:largest?difficulty=1`).

Every run keeps its checkpoints, so `checkpoints/step_000000` (after the cold start, before RL)
is each run's start. Each start and final model then plays, greedily, `--episodes` held-out
episodes (the test split: problems training never dealt; episode seeds from 1,000,000) of

- the team world, the model in every seat (`team` accuracy: the majority's answer right), and
- the single-agent task (`single` accuracy: its one answer right).

Printed (and written to `OUT/teams.md`, every cell to `OUT/teams.json`): per arm and world the
accuracy at the start and at the end, pooled over seeds with its 95% Wilson interval, the rise
(mean over seeds of final - start), the run-to-run spread (the standard deviation of the seeds'
final accuracies) and whether the rise exceeds it; then the comparisons the issue asks for, each
the difference of the two pooled accuracies with a 95% normal interval: the team-trained learner
playing as the team against the single-trained learner playing alone, and against the same
single-trained learner put in every seat of the team; and `mars` against `flow_grpo`.

Run: .venv/bin/python bench/teams.py [--seeds 0,1,2] [--budget 540] [--episodes 200] [--parallel 2]
     [--out runs/teams-bench] [--set key=value ...]
Smoke (3.5 minutes on two shared cores; it checks the pipeline, not learning):
     .venv/bin/python bench/teams.py --seeds 0 --budget 60 --episodes 20 --set sft.steps=4 \
         --set sft.episodes=30 --set rollout.episodes_per_step=8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from demo_seeds import run_all

EVAL_SEED = 1_000_000
TASK = "largest"
DIFFICULTY = 1
TEAM_ENV = "debate-v0"
SINGLE_ENV = f"reasoning:{TASK}?difficulty={DIFFICULTY}"
ARMS: dict[str, list[str]] = {
    "team-mars": [],
    "team-flow": ["algorithm.estimator=flow_grpo", "algorithm.estimator_options={}", "rollout.group_size=4"],
    "single": [
        f'rollout.envs=["{SINGLE_ENV}"]',
        "rollout.env_options={}",
        "rollout.casts={}",
    ],
}
"""Each arm's overrides of the shipped teams config."""
WORLDS = ("team", "single")
STAGES = ("start", "final")


def shipped_config() -> Path:
    from importlib.resources import files

    return Path(str(files("palaestra.train") / "configs" / "teams.toml"))


def finished(run: Path) -> bool:
    return (run / "final" / "config.json").is_file() and (run / "checkpoints" / "step_000000").is_dir()


def train_command(arm: str, run: Path, seed: int, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "palaestra", "train", str(shipped_config()), "--no-progress"]
    values = {
        "train.seed": seed,
        "model.seed": seed,
        "train.out": run,
        "train.time_budget_s": args.budget,
        "train.steps": args.steps,
        "train.keep_checkpoints": 100000,
        "eval.final_episodes": 20,  # the bench evaluates on its own; keep the trainer's short
    }
    for key, value in values.items():
        command += ["--set", f"{key}={value}"]
    for override in [*ARMS[arm], *args.overrides]:
        command += ["--set", override]
    if run.exists():
        command.append("--resume")
    return command


def rl_steps(run: Path) -> int:
    steps = 0
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        record = json.loads(line)
        if record.get("phase") == "rl":
            steps = max(steps, int(record.get("step", 0)))
    return steps


# ----- evaluation ---------------------------------------------------------------------------------
async def accuracy(folder: Path, world: str, episodes: int) -> tuple[int, int]:
    """(right, played) for the model in every seat of `world` on the held-out split."""
    from palaestra.core.registry import make
    from palaestra.rollout.config import RunConfig
    from palaestra.rollout.run_episode import resolve_agents
    from palaestra.rollout.runner import play_in_memory

    policy = f"llm:hf:{folder}?temperature=0"
    if world == "team":
        env_id, options = TEAM_ENV, {"task": TASK, "difficulty": DIFFICULTY, "split": "test"}
    else:
        env_id, options = SINGLE_ENV, {"split": "test"}
    seats = len(make(env_id, **options).players)
    config = RunConfig(
        env_id=env_id,
        env_options=options,
        agents=[policy] * seats,
        episodes=episodes,
        seed=EVAL_SEED,
        concurrency=64,
    )
    played = await play_in_memory(config, resolve_agents(config.agents))
    finished_ok = [e for e in played if e.status == "ok"]
    right = sum(1 for e in finished_ok if max(e.returns.values(), default=0.0) >= 1.0)
    return right, len(finished_ok)


def evaluate_run(run: Path, episodes: int) -> dict[str, dict[str, list[int]]]:
    """The run's start and final models in both worlds, cached in the run folder."""
    cache = run / f"bench-teams-n{episodes}.json"
    if cache.is_file():
        cached: dict[str, dict[str, list[int]]] = json.loads(cache.read_text())
        return cached
    import torch

    torch.set_num_threads(1)
    folders = {"start": run / "checkpoints" / "step_000000", "final": run / "final"}

    async def everything() -> dict[str, dict[str, list[int]]]:
        return {
            stage: {world: list(await accuracy(folders[stage], world, episodes)) for world in WORLDS}
            for stage in STAGES
        }

    results = asyncio.run(everything())
    cache.write_text(json.dumps(results))
    return results


# ----- statistics ---------------------------------------------------------------------------------
def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def pooled(cells: Sequence[Sequence[int]]) -> tuple[int, int]:
    return sum(c[0] for c in cells), sum(c[1] for c in cells)


def rate_text(cells: Sequence[Sequence[int]]) -> str:
    right, n = pooled(cells)
    if not n:
        return "-"
    low, high = wilson(right, n)
    return f"{100 * right / n:.1f} ({100 * low:.1f}-{100 * high:.1f})"


def difference_text(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> str:
    """Pooled rate of `a` minus pooled rate of `b`, with a 95% normal interval."""
    (ra, na), (rb, nb) = pooled(a), pooled(b)
    if not na or not nb:
        return "-"
    pa, pb = ra / na, rb / nb
    half = 1.96 * math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    return f"{100 * (pa - pb):+.1f} ± {100 * half:.1f}"


def per_seed(cells: Sequence[Sequence[int]]) -> list[float]:
    return [c[0] / c[1] for c in cells if c[1]]


# ----- the tables ---------------------------------------------------------------------------------
COLUMNS = ("arm", "world", "RL steps", "start % (CI)", "final % (CI)", "finals per seed", "rise", "spread",
           "rise > spread")  # fmt: skip


def report(
    results: dict[str, dict[int, dict[str, Any]]], seeds: Sequence[int], console: Console
) -> list[str]:
    """Print the tables; return them as Markdown lines."""
    markdown = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table = Table(title=f"held-out accuracy ({TASK} d{DIFFICULTY}, test split), start -> final")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for arm, by_seed in results.items():
        for world in WORLDS:
            starts = [by_seed[s]["cells"]["start"][world] for s in seeds]
            finals = [by_seed[s]["cells"]["final"][world] for s in seeds]
            rises = [f - s for f, s in zip(per_seed(finals), per_seed(starts), strict=True)]
            rise = statistics.mean(rises) if rises else 0.0
            spread = statistics.stdev(per_seed(finals)) if len(finals) > 1 else float("nan")
            row = [
                arm,
                world,
                ",".join(str(by_seed[s]["rl_steps"]) for s in seeds),
                rate_text(starts),
                rate_text(finals),
                " ".join(f"{100 * v:.0f}" for v in per_seed(finals)),
                f"{100 * rise:+.1f}",
                "-" if math.isnan(spread) else f"{100 * spread:.1f}",
                "-" if math.isnan(spread) else ("yes" if rise > spread else "no"),
            ]
            table.add_row(*row)
            markdown.append("| " + " | ".join(row) + " |")
    console.print(table)

    def finals(arm: str, world: str) -> list[list[int]]:
        return [results[arm][s]["cells"]["final"][world] for s in seeds]

    comparisons = [
        (
            "team-trained as the team vs single-trained alone",
            finals("team-mars", "team"),
            finals("single", "single"),
        ),
        (
            "team-trained as the team vs single-trained as the team",
            finals("team-mars", "team"),
            finals("single", "team"),
        ),
        (
            "team-trained alone vs single-trained alone",
            finals("team-mars", "single"),
            finals("single", "single"),
        ),
        ("team: mars vs flow_grpo", finals("team-mars", "team"), finals("team-flow", "team")),
    ]
    second = Table(title="comparisons (final models, pooled over seeds): difference in points, 95% CI")
    second.add_column("comparison")
    second.add_column("difference", justify="right")
    markdown += ["", "| comparison | difference (points, 95% CI) |", "|---|---|"]
    for name, left, right in comparisons:
        second.add_row(name, difference_text(left, right))
        markdown.append(f"| {name} | {difference_text(left, right)} |")
    console.print(second)
    return markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds of training per run")
    parser.add_argument(
        "--steps", type=int, default=400, help="the step horizon (the budget should stop first)"
    )
    parser.add_argument("--episodes", type=int, default=200, help="held-out episodes per model and world")
    parser.add_argument("--parallel", type=int, default=2, help="runs trained at once (one core each)")
    parser.add_argument("--out", type=Path, default=Path("runs/teams-bench"))
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override key=value"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {(arm, seed): args.out / arm / f"seed{seed}" for arm in ARMS for seed in seeds}
    commands = [train_command(arm, run, seed, args) for (arm, seed), run in runs.items() if not finished(run)]
    run_all(commands, args.parallel)
    results: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in ARMS}
    for (arm, seed), run in runs.items():
        results[arm][seed] = {"rl_steps": rl_steps(run), "cells": evaluate_run(run, args.episodes)}
    console = Console(width=160)
    markdown = report(results, seeds, console)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "teams.json").write_text(
        json.dumps({"seeds": seeds, "budget": args.budget, "results": results})
    )
    (args.out / "teams.md").write_text("\n".join(markdown) + "\n")
    console.print(f"written: {args.out / 'teams.md'}, {args.out / 'teams.json'}")


if __name__ == "__main__":
    main()
