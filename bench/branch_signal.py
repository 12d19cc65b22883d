"""Does branching tell a good tic-tac-toe move from a bad one? The signal of `rollout.branch_states`.

Loads a policy (a model folder, e.g. RUN/final), plays one RL step's rollouts with the shipped
config (its league: the policy itself as the start snapshot), draws `--states` branch positions
from them and plays their continuations exactly as the trainer does, then checks each position
against the rules: where the player to move could win at once, is a winning move's branch
advantage the group's highest? Where it had to block (no win, the opponent threatens one), is a
blocking move's? Prints one table: positions, how often the tactical move came out on top, and
the mean advantage of tactical moves against the others.

Run: .venv/bin/python bench/branch_signal.py RUN/final [--states 80] [--opponent policy|source]
     [--temperature T] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from palaestra.train.branching import continuation_trajectories
from palaestra.train.config import default_config_path, parse_config
from palaestra.train.trainer import Trainer
from policy_tactics import completing_cells  # the sibling bench script (bench/ is on sys.path)


def branch_step(model: Path, out: Path, overrides: dict[str, Any]) -> tuple[Trainer, list[Any]]:
    """A trainer over `model` and its branches of one rollout step (no update)."""
    base = tomllib.loads(default_config_path().read_text())
    settings = {"train.out": str(out), "model.init": str(model), "sft.steps": 0, **overrides}
    trainer = Trainer(parse_config(base, settings))

    async def scenario() -> list[Any]:
        trainer._prepare_folder()
        trainer._build(trainer._initial_model_folder())
        trainer.league.add(0, trainer.policy.state_dict())
        try:
            _, branches, _ = await trainer._rollouts()
            return branches
        finally:
            await trainer.engine.close()
            await trainer.league_engine.close()

    return trainer, asyncio.run(scenario())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model folder (e.g. RUN/final)")
    parser.add_argument("--states", type=int, default=80)
    parser.add_argument("--opponent", choices=["source", "policy"], default="policy")
    parser.add_argument("--temperature", type=float, default=None, help="continuations (default: rollouts')")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides: dict[str, Any] = {
        "train.seed": args.seed,
        "rollout.branch_states": args.states,
        "rollout.branch_opponent": args.opponent,
    }
    if args.temperature is not None:
        overrides["rollout.branch_temperature"] = args.temperature
    with tempfile.TemporaryDirectory() as folder:
        trainer, branches = branch_step(args.model, Path(folder) / "run", overrides)
    _, advantages, stats = trainer._branch_batch(branches)
    # (positions, tactical move on top, tactical advantages, other advantages) per kind
    kinds: dict[str, list[Any]] = {"win at once": [0, 0, [], []], "block": [0, 0, [], []]}
    start = 0
    for point, group in branches:
        board = [" "] * 9
        for turn in point.episode.turns[: point.turn_index]:
            board[int(turn.action) - 1] = "X" if turn.player == "player_0" else "O"
        mark = "X" if point.player == "player_0" else "O"
        wins, blocks = completing_cells(board, mark), completing_cells(board, "OX"[mark == "O"])
        # The continuations the trainer kept, in order, and the move each played at the branch.
        kept = continuation_trajectories(point, group)
        by_id = {episode.id: episode for episode in group}
        chosen = [per_turn[point.branch_turn] for per_turn in advantages[start : start + len(kept)]]
        cells = [int(str(by_id[t.episode_id].turns[point.turn_index].action)) - 1 for t in kept]
        start += len(kept)
        kind, good = ("win at once", wins) if wins else ("block", blocks) if blocks else (None, set())
        if kind is None or not chosen:
            continue
        row = kinds[kind]
        row[0] += 1
        pairs = list(zip(cells, chosen, strict=True))
        row[1] += any(cell in good and value == max(chosen) for cell, value in pairs)
        row[2] += [value for cell, value in pairs if cell in good]
        row[3] += [value for cell, value in pairs if cell not in good]
    table = Table(
        title=f"{args.model}: {stats.get('branch_points', 0)} positions, {stats.get('branch_episodes', 0)} "
        f"continuations (opponent {args.opponent}, temperature {args.temperature or 'as rollouts'})"
    )
    for column in ("position", "count", "tactical move on top", "mean advantage: tactical / other"):
        table.add_column(column, justify="right")
    for kind, (count, top, good, other) in kinds.items():
        means = f"{np.mean(good):+.2f} / {np.mean(other):+.2f}" if good and other else "-"
        table.add_row(kind, str(count), f"{top} ({100 * top / max(1, count):.0f}%)", means)
    Console().print(table)


if __name__ == "__main__":
    main()
