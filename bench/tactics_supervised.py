"""How fast can a tiny-model shape learn tic-tac-toe's tactics when it is told the answers?

The main job's RL stage has to discover, from wins and losses alone, which cell completes a line
and which blocks one. This bench measures the easier problem underneath, to choose the model's
shape: every reachable tic-tac-toe position where a player must move, rendered exactly as the
trainer's agent sees it (the env's observation through a prompt template and the tiny model's
chat template), labelled with the cells that win at once, else the cells that block the opponent's
line, else the minimax-optimal cells. Each variant (a fresh tiny model from the same seed) trains
on 80% of the positions with cross-entropy on the answer digit (AdamW, lr 1e-3, 256 positions
a step, one thread) and is scored on the held-out 20%: how often its top answer takes the win,
makes the block, or is minimax-optimal. A shape that needs half the labelled examples to see a
line gives RL's much noisier signal a better chance in the same minutes.

Run: .venv/bin/python bench/tactics_supervised.py [--steps 400] [--seed 0] [--template board]
     [--perspective player|absolute] (the shipped config's board: player; sessions 5-9: absolute)
     [--variant NAME:key=value,key=value ...]
(default variants: the tiny model with hidden 128, MLP 512, 2 layers and 4 or 8 heads)
"""

from __future__ import annotations

import argparse
import functools
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from palaestra.agents.base import AgentView
from palaestra.agents.llm import TEMPLATES
from palaestra.core.registry import make
from palaestra.envs.games.tic_tac_toe import LINES
from palaestra.models.tiny import build_tiny_tokenizer, init_tiny_model, quiet_transformers
from policy_tactics import completing_cells  # the sibling bench script (bench/ is on sys.path)

Position = tuple[str, ...]  # nine cells: "X", "O" or " "


def winner(board: Position) -> str | None:
    for line in LINES:
        first = board[line[0]]
        if first != " " and all(board[cell] == first for cell in line):
            return first
    return None


@functools.cache
def value(board: Position, mover: str) -> int:
    """Minimax value of the position for the player to move (+1 win, 0 draw, -1 loss)."""
    won = winner(board)
    if won is not None:
        return 1 if won == mover else -1
    if " " not in board:
        return 0
    other = "O" if mover == "X" else "X"
    return max(-value(play(board, cell, mover), other) for cell in range(9) if board[cell] == " ")


def play(board: Position, cell: int, mark: str) -> Position:
    return (*board[:cell], mark, *board[cell + 1 :])


def positions() -> dict[Position, tuple[set[int], str, set[int]]]:
    """Every reachable position with a move to make: (labelled cells, their kind, optimal cells)."""
    found: dict[Position, tuple[set[int], str, set[int]]] = {}

    def walk(board: Position, mover: str) -> None:
        if winner(board) is not None or " " not in board or board in found:
            return
        other = "O" if mover == "X" else "X"
        wins, blocks = completing_cells(board, mover), completing_cells(board, other)
        values = {c: -value(play(board, c, mover), other) for c in range(9) if board[c] == " "}
        optimal = {c for c, v in values.items() if v == max(values.values())}
        if wins:
            found[board] = (wins, "win", optimal)
        elif blocks:
            found[board] = (blocks, "block", optimal)
        else:
            found[board] = (optimal, "other", optimal)
        for cell in range(9):
            if board[cell] == " ":
                walk(play(board, cell, mover), other)

    walk((" ",) * 9, "X")
    return found


def prompt_text(board: Position, template: str, perspective: str = "player") -> str:
    """The position's prompt as the trainer's agent renders it: the env's own observation."""
    env = make("tic_tac_toe-v0", perspective=perspective)
    step = env.reset(seed=0)
    xs = [cell for cell in range(9) if board[cell] == "X"]
    os_ = [cell for cell in range(9) if board[cell] == "O"]
    moves = [cell for pair in zip(xs, [*os_, None], strict=False) for cell in pair if cell is not None]
    for cell in moves:
        step = env.step({step.to_act[0]: str(cell + 1)})
    player = step.to_act[0]
    view = AgentView(
        player=player,
        messages=list(step.observations[player]),
        legal_actions=env.legal_actions(player),
        turn=0,
        step=len(moves),
        episode_id="tactics",
        seed=0,
    )
    return TEMPLATES[template].prompt_text(view)


def parse_variant(text: str) -> tuple[str, dict[str, int]]:
    name, _, rest = text.partition(":")
    sizes = {}
    for item in filter(None, rest.split(",")):
        key, _, number = item.partition("=")
        sizes[key.strip()] = int(number)
    return name, sizes


def run_variant(
    sizes: dict[str, int],
    data: dict[Position, tuple[str, set[int], str]],
    prompts: dict[Position, list[int]],
    *,
    steps: int,
    seed: int,
    pad_id: int,
    digit_ids: list[int],
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    rng = random.Random(seed)
    boards = sorted(data)
    rng.shuffle(boards)
    test, train = boards[: len(boards) // 5], boards[len(boards) // 5 :]
    with tempfile.TemporaryDirectory() as folder, quiet_transformers():
        init_tiny_model(Path(folder) / "model", seed=seed, **sizes)
        model = AutoModelForCausalLM.from_pretrained(Path(folder) / "model")
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

    def answer_logits(batch: list[Position]) -> torch.Tensor:
        width = max(len(prompts[b]) for b in batch)
        ids = torch.full((len(batch), width), pad_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, board in enumerate(batch):  # left-padded: every answer position is the last one
            ids[row, width - len(prompts[board]) :] = torch.tensor(prompts[board])
            mask[row, width - len(prompts[board]) :] = 1
        position_ids = (mask.cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
        return logits[:, -1, digit_ids]

    def score() -> dict[str, float]:
        hits = {"win": [0, 0], "block": [0, 0], "optimal": [0, 0]}
        model.eval()
        with torch.no_grad():
            for start in range(0, len(test), 512):
                batch = test[start : start + 512]
                for board, pick in zip(batch, answer_logits(batch).argmax(-1).tolist(), strict=True):
                    cells, kind, optimal = data[board]
                    if kind != "other":
                        hits[kind][0] += pick in cells
                        hits[kind][1] += 1
                    hits["optimal"][0] += pick in optimal
                    hits["optimal"][1] += 1
        model.train()
        return {kind: 100 * made / max(total, 1) for kind, (made, total) in hits.items()}

    checkpoints, results = {steps // 2, steps}, {}
    started = time.perf_counter()
    train_s = 0.0
    for step in range(1, steps + 1):
        batch = rng.sample(train, 256)
        step_started = time.perf_counter()
        logits = answer_logits(batch)
        target = torch.zeros_like(logits)
        for row, board in enumerate(batch):
            cells = data[board][0]
            target[row, sorted(cells)] = 1 / len(cells)
        loss = -(target * logits.log_softmax(-1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train_s += time.perf_counter() - step_started
        if step in checkpoints:
            results[step] = score()
    return {
        "parameters": parameters,
        "step_s": train_s / steps,
        "wall_s": time.perf_counter() - started,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", default="board", choices=sorted(TEMPLATES))
    parser.add_argument(
        "--perspective", default="player", choices=["player", "absolute"], help="the board's env option"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:key=value,... tiny-model sizes (hidden_size, intermediate_size, num_hidden_layers, "
        "num_attention_heads)",
    )
    args = parser.parse_args()
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2")
    torch.set_num_threads(1)
    variants = [parse_variant(v) for v in args.variant] or [
        (
            "4 heads",
            {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4},
        ),
        (
            "8 heads",
            {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8},
        ),
    ]
    data = positions()
    tokenizer = build_tiny_tokenizer()
    chats = {
        board: tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt_text(board, args.template, args.perspective)}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for board in data
    }
    prompts = {board: tokenizer(text, add_special_tokens=False)["input_ids"] for board, text in chats.items()}
    digit_ids = tokenizer.convert_tokens_to_ids([str(cell + 1) for cell in range(9)])
    console = Console()
    kinds = {kind: sum(1 for _, k, _ in data.values() if k == kind) for kind in ("win", "block", "other")}
    example = ("X", " ", " ", " ", "O", " ", " ", " ", "X")
    console.print(f"the prompt of one position, as the model reads it: {chats[example]!r}")
    console.print(
        f"{len(data)} positions ({kinds['win']} with a win to take, {kinds['block']} with a block to make); "
        f"template {args.template!r}, {args.steps} steps of 256, seed {args.seed}"
    )
    table = Table(title="held-out accuracy of the top answer, % (after half the steps -> after all)")
    for column in ("variant", "parameters", "s / step", "wins taken", "blocks made", "optimal"):
        table.add_column(column, justify="right")
    half = args.steps // 2
    for name, sizes in variants:
        measured = run_variant(
            sizes,
            data,
            prompts,
            steps=args.steps,
            seed=args.seed,
            pad_id=tokenizer.pad_token_id,
            digit_ids=digit_ids,
        )
        results = measured["results"]
        table.add_row(
            name,
            f"{measured['parameters']:,}",
            f"{measured['step_s']:.3f}",
            *(
                f"{results[half][kind]:.1f} -> {results[args.steps][kind]:.1f}"
                for kind in ("win", "block", "optimal")
            ),
        )
    console.print(table)


if __name__ == "__main__":
    main()
