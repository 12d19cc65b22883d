"""Connect Four, native and text-first, with OpenSpiel's `connect_four` rules and action ids.

The board has 6 rows and 7 columns. The action string is a column number "1".."7" (left to right);
its OpenSpiel action id is that number minus one. A disc drops to the lowest empty cell of its
column; a full column is not a legal action. Player 0 plays X and moves first; four in a line
(horizontal, vertical or diagonal) wins (+1/-1), a full board without one is a draw (0/0).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from palaestra.envs.games.base import TextGame

ROWS = 6
COLUMNS = 7
IN_A_ROW = 4
CELLS = ROWS * COLUMNS
EMPTY = "."
MARKS = ("X", "O")
COLUMN_NAMES: tuple[str, ...] = tuple(str(c + 1) for c in range(COLUMNS))
_COLUMN_OF: dict[str, int] = {name: c for c, name in enumerate(COLUMN_NAMES)}
_HEADER = " ".join(COLUMN_NAMES)
_EMPTY_ROW = " ".join([EMPTY] * COLUMNS)


def _cell(row: int, column: int) -> int:
    """Index in the flat board; row 0 is the bottom row."""
    return row * COLUMNS + column


def _rays(cell: int) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Per line direction, the cells stepping away from `cell` one way and the other (up to 3 each)."""
    row, column = divmod(cell, COLUMNS)
    rays = []
    for d_row, d_column in ((0, 1), (1, 0), (1, 1), (1, -1)):
        sides = []
        for sign in (1, -1):
            side = []
            for step in range(1, IN_A_ROW):
                r, c = row + sign * step * d_row, column + sign * step * d_column
                if not (0 <= r < ROWS and 0 <= c < COLUMNS):
                    break
                side.append(_cell(r, c))
            sides.append(tuple(side))
        rays.append((sides[0], sides[1]))
    return tuple(rays)


# Precomputed so a move checks only the lines through the disc just placed.
RAYS: tuple[tuple[tuple[tuple[int, ...], tuple[int, ...]], ...], ...] = tuple(
    _rays(cell) for cell in range(CELLS)
)


def completes_line(board: list[str], cell: int) -> bool:
    """Whether the disc at `cell` is part of `IN_A_ROW` equal discs in some line."""
    mark = board[cell]
    for forward, backward in RAYS[cell]:
        count = 1
        for other in forward:
            if board[other] != mark:
                break
            count += 1
        for other in backward:
            if board[other] != mark:
                break
            count += 1
        if count >= IN_A_ROW:
            return True
    return False


class ConnectFour(TextGame):
    """Connect Four on a 6x7 board; `board` holds "." / "X" / "O" row by row, bottom row first."""

    game_name = "Connect Four"
    openspiel_name = "connect_four"
    has_chance = False
    rules = (
        f"Two players take turns dropping one disc into one of the {COLUMNS} columns of an upright "
        f"board with {ROWS} rows, X first. The disc falls to the lowest empty cell of that column. "
        f"The first to get {IN_A_ROW} of their discs in a line (horizontal, vertical or diagonal) "
        "wins. If the board fills up with no such line, the game is a draw. Columns are numbered "
        f"1-{COLUMNS} from left to right; an action is the number of a column that is not full. "
        "In the board picture the top line gives the column numbers, '.' is an empty cell and "
        "the bottom line is the bottom of the board."
    )

    def __init__(self, **policy: Any) -> None:
        super().__init__(**policy)
        self.board: list[str] = [EMPTY] * CELLS  # row-major, row 0 at the bottom
        self.heights: list[int] = [0] * COLUMNS  # discs in each column
        self.to_move = 0
        self.winner = -1
        self.moves = 0
        # The picture of each row, bottom first; kept in step with `board` so that building the
        # observation every turn costs one join, not one per row.
        self._row_texts: list[str] = [_EMPTY_ROW] * ROWS

    def _new_game(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        self.board = [EMPTY] * CELLS
        self.heights = [0] * COLUMNS
        self.to_move = 0
        self.winner = -1
        self.moves = 0
        self._row_texts = [_EMPTY_ROW] * ROWS

    def _current_player(self) -> int:
        return self.to_move

    def _legal(self) -> list[str]:
        heights = self.heights
        return [COLUMN_NAMES[c] for c in range(COLUMNS) if heights[c] < ROWS]

    def _apply(self, action: str) -> None:
        column = _COLUMN_OF[action]
        row = self.heights[column]
        cell = row * COLUMNS + column
        board = self.board
        board[cell] = MARKS[self.to_move]
        self._row_texts[row] = " ".join(board[row * COLUMNS : (row + 1) * COLUMNS])
        self.heights[column] += 1
        self.moves += 1
        self.history.append(column)
        if self.moves >= 2 * IN_A_ROW - 1 and completes_line(board, cell):
            self.winner = self.to_move
        self.to_move = 1 - self.to_move

    def action_for_id(self, action_id: int) -> str:
        return COLUMN_NAMES[action_id]

    def _is_over(self) -> bool:
        return self.winner >= 0 or self.moves == CELLS

    def _returns(self) -> list[float]:
        if self.winner < 0:
            return [0.0, 0.0]
        return [1.0, -1.0] if self.winner == 0 else [-1.0, 1.0]

    def _player_info(self, seat: int) -> str:
        order = "first" if seat == 0 else "second"
        return f"You play {MARKS[seat]} and move {order}."

    def _state_text(self, seat: int) -> str:
        lines = [_HEADER, *reversed(self._row_texts)]
        if self.history:
            last_mark = MARKS[(self.moves - 1) % 2]
            lines.append(f"Last move: {last_mark} in column {self.history[-1] + 1}.")
        if seat >= 0:
            lines.append(f"You are {MARKS[seat]}.")
        return "\n".join(lines)

    def _get_state(self) -> Any:
        return (list(self.board), list(self.heights), self.to_move, self.winner, self.moves)

    def _set_state(self, state: Any) -> None:
        board, heights, self.to_move, self.winner, self.moves = state
        self.board, self.heights = list(board), list(heights)
        self._row_texts = [" ".join(self.board[r * COLUMNS : (r + 1) * COLUMNS]) for r in range(ROWS)]
