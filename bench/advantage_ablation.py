"""Advantage estimators compared: `mars` vs `grpo` vs `reinforce` on tic-tac-toe and Kuhn poker.

Every cell trains the tiny model with the shipped main-job config, changing only the estimator
(and, for `grpo`, a same-seed group size, since its baseline is the group mean) and the game,
with the same seeds and the same budget (`--steps` RL steps, so a loaded machine does not
change the budget; `--seconds` adds a wall-clock cap). Evaluation runs every
`--eval-every` steps against random (and the game's solver: minimax for tic-tac-toe, CFR for
Kuhn), as first and second mover. Reported per cell: env steps until the win rate vs random
reached 90% in both seats (or "not reached"), and the final win rates vs random and vs the
solver (mean of the two seats). Runs go to `runs/advantage-ablation/<game>-<estimator>-s<seed>/`
and are reused when finished.

Run: .venv/bin/python bench/advantage_ablation.py [--seeds 0] [--steps 60] [--seconds S]
     [--estimators mars,grpo,reinforce] [--games tic_tac_toe-v0,kuhn_poker-v0] [--parallel 2]
     [--set KEY=VALUE ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# The sibling script's runner (this folder is on sys.path when a script here runs).
from demo_seeds import run_all

SOLVER = {"tic_tac_toe-v0": "minimax", "kuhn_poker-v0": "cfr"}
GROUP_SIZE = {"grpo": 8}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def cell_command(game: str, estimator: str, seed: int, args: argparse.Namespace) -> list[str] | None:
    """The `palaestra train` command of one cell, or None when the cell already finished."""
    out = args.out / f"{game}-{estimator}-s{seed}"
    if (out / "final" / "config.json").is_file():
        return None
    overrides = {
        "rollout.envs": json.dumps([game]),
        "algorithm.estimator": estimator,
        # The shipped config's estimator options belong to `mars`; the others take none.
        **({} if estimator == "mars" else {"algorithm.estimator_options": "{}"}),
        "rollout.group_size": GROUP_SIZE.get(estimator, 1),
        "train.seed": seed,
        "model.seed": seed,
        "train.steps": args.steps,
        "train.time_budget_s": args.seconds or 1e9,
        "eval.every": args.eval_every,
        "eval.episodes": args.eval_episodes,
        "eval.opponents": json.dumps({game: ["random", SOLVER[game]]}),
        "train.out": out,
    }
    command = [sys.executable, "-m", "palaestra", "train", "--no-progress"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    for override in args.overrides:  # the user's, last, so they win
        command += ["--set", override]
    if out.exists():
        command.append("--resume")
    return command


def summarize(out: Path, game: str) -> dict[str, Any]:
    """Per cell: env steps until 90% wins vs random as first mover, and the final evaluation.

    "Final" is the run's last evaluation (400 games per seat); the evaluations on the way (every
    `--eval-every` steps, `--eval-episodes` games) only date the 90% crossing. Steps count from the
    start of RL (the cold start's episodes are not counted).
    """
    metrics = {r["step"]: r for r in read_jsonl(out / "metrics.jsonl") if r.get("phase") == "rl"}
    by_step: dict[int, dict[tuple[str, int], dict[str, Any]]] = {}
    for record in read_jsonl(out / "eval.jsonl"):
        step = record["step"] if record["stage"] != "final" else max(metrics, default=0) + 1
        by_step.setdefault(step, {})[(record["opponent"], record["seat"])] = record
    reached = None
    for step in sorted(by_step):
        first = by_step[step].get(("random", 0))
        if step and first and first["win_rate"] >= 0.9:
            reached = metrics.get(min(step, max(metrics, default=0)), {}).get("env_steps", 0)
            break
    final = by_step[max(by_step)] if by_step else {}
    start = by_step.get(0, {})

    def cell(stage: dict[tuple[str, int], dict[str, Any]], opponent: str, seat: int, key: str) -> float:
        return float(stage.get((opponent, seat), {}).get(key, float("nan")))

    return {
        "reached": reached,
        "final": final,
        "start": start,
        "cell": cell,
        "env_steps": metrics[max(metrics)]["env_steps"] if metrics else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--estimators", default="mars,grpo,reinforce")
    parser.add_argument("--games", default="tic_tac_toe-v0,kuhn_poker-v0")
    parser.add_argument("--out", type=Path, default=Path("runs/advantage-ablation"))
    parser.add_argument("--parallel", type=int, default=1, help="cells trained at once (one core each)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every cell (e.g. 'algorithm.estimator_options={}'); give --out too",
    )
    args = parser.parse_args()
    cells = [
        (game, estimator, int(seed))
        for game in args.games.split(",")
        for estimator in args.estimators.split(",")
        for seed in args.seeds.split(",")
    ]
    commands = [command for cell in cells if (command := cell_command(*cell, args)) is not None]
    run_all(commands, args.parallel)
    table = Table(title="advantage estimators, same seeds and budget (tiny model)")
    for column in (
        "game",
        "estimator",
        "seed",
        "env steps to 90% wins vs random (1st)",
        "win % vs random 1st / 2nd: start -> final",
        "vs solver 1st / 2nd: non-loss % (return)",
        "RL env steps",
    ):
        table.add_column(column, justify="right")
    for game, estimator, seed in cells:
        summary = summarize(args.out / f"{game}-{estimator}-s{seed}", game)
        cell, start, final, solver = summary["cell"], summary["start"], summary["final"], SOLVER[game]
        table.add_row(
            game,
            estimator,
            str(seed),
            f"{summary['reached']:,}" if summary["reached"] else "not reached",
            " / ".join(
                f"{100 * cell(start, 'random', seat, 'win_rate'):.0f} -> "
                f"{100 * cell(final, 'random', seat, 'win_rate'):.0f}"
                for seat in (0, 1)
            ),
            f"{solver}: "
            + " / ".join(
                f"{100 * cell(final, solver, seat, 'non_loss_rate'):.0f}"
                f" ({cell(final, solver, seat, 'mean_return'):+.2f})"
                for seat in (0, 1)
            ),
            f"{summary['env_steps']:,}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
