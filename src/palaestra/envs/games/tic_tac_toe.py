"""Tic-tac-toe, native and text-first, with OpenSpiel's rules and action ids.

Cells are numbered 1-9 in reading order; the action string is the cell number and its
OpenSpiel action id is that number minus one. Player 0 plays X and moves first.

Option `perspective`: `absolute` (default) shows each player the board with X and O and ends the
state with `You are X.`; `player` shows each player its own marks as `M` and its opponent's as
`T` (the legend is in its PLAYER INFORMATION), with no seat line: the canonical view of
AlphaZero-style learners, where a position means the same to either seat (two in a line of `T`
is a threat to block whichever mark the mover plays), so what a policy learns as one seat holds
for the other.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

from palaestra.core.registry import EnvError
from palaestra.envs.games.base import TextGame

LINES: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),
    (0, 3, 6), (1, 4, 7), (2, 5, 8),
    (0, 4, 8), (2, 4, 6),
)  # fmt: skip
CELL_NAMES: tuple[str, ...] = tuple(str(i + 1) for i in range(9))
LINES_THROUGH: tuple[tuple[tuple[int, int, int], ...], ...] = tuple(
    tuple(line for line in LINES if cell in line) for cell in range(9)
)
MARKS = ("X", "O")
OWN_MARK, OPPONENT_MARK = "M", "T"
Perspective = Literal["absolute", "player"]
_BOARD = "{} | {} | {}\n---------\n{} | {} | {}\n---------\n{} | {} | {}"


def winner_of(board: list[int]) -> int:
    """The seat (0 or 1) holding a full line, or -1; `board` holds -1 for empty cells."""
    for a, b, c in LINES:
        mark = board[a]
        if mark >= 0 and mark == board[b] == board[c]:
            return mark
    return -1


class TicTacToe(TextGame):
    game_name = "Tic-Tac-Toe"
    openspiel_name = "tic_tac_toe"
    has_chance = False
    rules = (
        "Two players take turns marking one empty cell of a 3x3 grid, X first. The first to get "
        "three of their marks in a row, column or diagonal wins. If all nine cells fill up with "
        "no line, the game is a draw. Cells are numbered 1-9 in reading order; an action is the "
        "number of an empty cell."
    )

    def __init__(self, *, perspective: Perspective = "absolute", **policy: Any) -> None:
        if perspective not in ("absolute", "player"):
            raise EnvError(f"perspective must be 'absolute' or 'player', got {perspective!r}")
        super().__init__(**policy)
        self.perspective: Perspective = perspective
        self.board: list[int] = [-1] * 9
        self.to_move = 0
        self.winner = -1
        # Kept in step with `board` so a step never rebuilds them: the text of each cell and the
        # free cells (both derived state, rebuilt by `_set_state`).
        self._cells: list[str] = list(CELL_NAMES)
        self._free: list[str] = list(CELL_NAMES)

    def _new_game(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        self.board = [-1] * 9
        self.to_move = 0
        self.winner = -1
        self._cells = list(CELL_NAMES)
        self._free = list(CELL_NAMES)

    def _current_player(self) -> int:
        return self.to_move

    def _legal(self) -> list[str]:
        return self._free[:]  # a copy: callers may keep it while the game moves on

    def _apply(self, action: str) -> None:
        cell = int(action) - 1
        mark = self.to_move
        board = self.board
        board[cell] = mark
        self._cells[cell] = MARKS[mark]
        self._free.remove(action)
        self.history.append(cell)
        for a, b, c in LINES_THROUGH[cell]:  # only lines through the new mark can be complete
            if board[a] == board[b] == board[c]:
                self.winner = mark
                break
        self.to_move = 1 - mark

    def action_for_id(self, action_id: int) -> str:
        return CELL_NAMES[action_id]

    def _is_over(self) -> bool:
        return self.winner >= 0 or not self._free

    def _returns(self) -> list[float]:
        if self.winner < 0:
            return [0.0, 0.0]
        return [1.0, -1.0] if self.winner == 0 else [-1.0, 1.0]

    def _player_info(self, seat: int) -> str:
        order = "first" if seat == 0 else "second"
        info = f"You play {MARKS[seat]} and move {order}."
        if self.perspective == "player":
            info += f" The board shows your marks as {OWN_MARK} and your opponent's as {OPPONENT_MARK}."
        return info

    def _state_text(self, seat: int) -> str:
        if seat < 0:
            return _BOARD.format(*self._cells)
        if self.perspective == "player":
            shown = {MARKS[seat]: OWN_MARK, MARKS[1 - seat]: OPPONENT_MARK}
            return _BOARD.format(*(shown.get(cell, cell) for cell in self._cells))
        return f"{_BOARD.format(*self._cells)}\nYou are {MARKS[seat]}."

    def _get_state(self) -> Any:
        return (list(self.board), self.to_move, self.winner)

    def _set_state(self, state: Any) -> None:
        board, self.to_move, self.winner = state
        self.board = list(board)
        self._cells = [MARKS[m] if m >= 0 else CELL_NAMES[i] for i, m in enumerate(self.board)]
        self._free = [CELL_NAMES[i] for i in range(9) if self.board[i] < 0]
