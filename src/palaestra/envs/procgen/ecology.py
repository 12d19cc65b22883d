"""`wildfire-v0`: crews with a shared water budget contain a spreading wildfire (HIVEX's wildfire
resource management, as text; docs/references.md).

A `size` x `size` forest (`T`, some open ground `.`) starts with a few fires (`*`). Each round
every crew acts at once: `move north|south|east|west`, `douse here|north|south|east|west` (puts
out a burning cell where it stands or next to it, for one unit of the team's shared water), or
`wait`. Then the fire spreads, deterministically from the seed: every burning cell heats its four
neighbours by one, and a forest cell ignites when its heat reaches its dryness (2, 3 or 4, drawn
per cell); a cell burns for `burn` rounds (default 4) and is then ash (`x`). Crews cannot step
into fire. Every crew sees the whole map (crews as digits), the water left and its teammates'
last actions.

The episode ends when no cell burns, or after `max_turns` rounds. The team succeeds (every crew
gets 1) when the fire is out and at least `target` (default 0.5) of the forest was saved (never
burned). `info["procgen"]` reports the saved share (`measure`), the upper bound (the forest not
burning at the start), rounds and water used.

The solver is a team planner from the true state (greedy, not optimal): crews take distinct
burning cells, nearest first (burning cells next to the most unburnt forest win ties), walk
towards them and douse when they can. Generation keeps, per seed, the first draw (of up to 30)
that this planner contains, so every task has a gold policy: the task distribution is the fires
a greedy team can beat, and better teams save more forest. Validation checks that the planner
succeeds and doing nothing fails (`palaestra validate procgen`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.env import PlayerId
from palaestra.core.registry import EnvError
from palaestra.envs.procgen.base import MAX_ANSWER_CHARS, ProcgenEnv, whole_option

DRYNESS = (2, 3, 3, 4)
"""Heat a forest cell takes to ignite, drawn per cell."""
DIRS = {"north": (-1, 0), "south": (1, 0), "west": (0, -1), "east": (0, 1)}
WAIT = "wait"
_TRIES = 30
FOREST, OPEN, ASH, OUT = "T", ".", "x", "o"
"""Cell kinds; a burning cell is stored as its remaining rounds (an int)."""


@dataclass
class Fire:
    cells: list[list[Any]]
    dryness: list[list[int]]
    heat: list[list[int]] = field(default_factory=list)
    crews: list[tuple[int, int]] = field(default_factory=list)
    water: int = 0
    water_used: int = 0
    rounds: int = 0
    forest: int = 0
    last: dict[int, str] = field(default_factory=dict)

    def burning(self) -> list[tuple[int, int]]:
        return [(r, c) for r, row in enumerate(self.cells) for c, v in enumerate(row) if isinstance(v, int)]

    def saved(self) -> int:
        return sum(v == FOREST for row in self.cells for v in row)


class Wildfire(ProcgenEnv):
    """The wildfire task (see the module docstring). Options: `players` (crews, 1-4), `size` (5-9),
    `fires` (starting fires; default 1 + players // 2), `water` (default 4 per fire), `burn`,
    `target`, `max_turns` (default 3 x size), `retries`."""

    game = "wildfire"
    title = "a wildfire containment task"
    idle_action = WAIT

    def __init__(
        self,
        *,
        players: int = 3,
        size: int = 6,
        fires: int | None = None,
        water: int | None = None,
        burn: int = 4,
        target: float = 0.5,
        max_turns: int | None = None,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
    ) -> None:
        super().__init__(
            num_players=whole_option("players", players, 1, 4),
            retries=retries,
            max_answer_chars=max_answer_chars,
        )
        self.size = whole_option("size", size, 5, 9)
        self.fires = whole_option("fires", 1 + players // 2 if fires is None else fires, 1, size)
        self.water_budget = whole_option("water", 4 * self.fires if water is None else water, 0)
        self.burn = whole_option("burn", burn, 1, 10)
        if not isinstance(target, int | float) or isinstance(target, bool) or not 0 <= target <= 1:
            raise EnvError(f"target must be a share from 0 to 1, got {target!r}")
        self.target = float(target)
        self.max_rounds = whole_option("max_turns", 3 * self.size if max_turns is None else max_turns, 1)
        self.fire = Fire([], [])
        self.upper_bound = 0.0

    def _setup(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        for _ in range(_TRIES):  # keep the first fire the team planner can contain
            self._generate(rng)
            if self._planner_contains():
                return
        # Seeds whose every draw defeats the planner keep the last one (a task with no gold).

    def _planner_contains(self) -> bool:
        """Whether the team planner succeeds from the current start (simulated on a copy)."""
        start = copy.deepcopy(self.fire)
        returns, rewards = dict(self.core.returns), dict(self.core.step_rewards)
        try:
            while self.fire.burning() and self.fire.rounds < self.max_rounds:
                self._apply(dict(zip(self.players, self._team_plan(), strict=True)))
            return self._success()
        finally:
            self.fire = self.world = start
            self.core.returns, self.core.step_rewards = returns, rewards

    def _generate(self, rng: random.Random) -> None:
        n = self.size
        cells: list[list[Any]] = [
            [FOREST if rng.random() < 0.85 else OPEN for _ in range(n)] for _ in range(n)
        ]
        dryness = [[rng.choice(DRYNESS) for _ in range(n)] for _ in range(n)]
        interior = [(r, c) for r in range(1, n - 1) for c in range(1, n - 1) if cells[r][c] == FOREST]
        for r, c in rng.sample(interior, min(self.fires, len(interior))):
            cells[r][c] = self.burn
        # Crews start within reach: somewhere two to three steps from a fire (a lookout's distance).
        fires = [(r, c) for r in range(n) for c in range(n) if isinstance(cells[r][c], int)]
        near = [
            (r, c)
            for r in range(n)
            for c in range(n)
            if not isinstance(cells[r][c], int)
            and 2 <= min(abs(r - fr) + abs(c - fc) for fr, fc in fires) <= 3
        ]
        crews = rng.sample(near, min(len(self.players), len(near)))
        crews += [rng.choice(near) for _ in range(len(self.players) - len(crews))]
        forest = sum(v != OPEN for row in cells for v in row)
        self.fire = Fire(cells, dryness, [[0] * n for _ in range(n)], crews, self.water_budget, 0, 0, forest)
        self.world = self.fire
        self.upper_bound = self.fire.saved() / forest if forest else 0.0

    def _rules(self) -> str:
        return (
            f"A {self.size}x{self.size} forest is on fire. Map: T forest, . open ground, * burning, x ash, "
            "o put out, digits your crews. Each round every crew acts at once: `move DIR` (not into fire), "
            "`douse here|DIR` puts out a burning cell where you stand or next to you for one unit of the "
            f"team's {self.water_budget} water, or `wait`. Then every burning cell heats its neighbours; a "
            "forest cell ignites when its heat reaches its dryness (2 to 4, unseen); a cell burns "
            f"{self.burn} rounds, then is ash. The team wins when the fire is out and at least "
            f"{self.target:.0%} of the forest was never burned; at most {self.max_rounds} rounds."
        )

    def _player_info(self, player: PlayerId) -> str:
        return f"You are {player}, crew {self.players.index(player)} of {len(self.players)}."

    def _cell(self, r: int, c: int) -> Any:
        if 0 <= r < self.size and 0 <= c < self.size:
            return self.fire.cells[r][c]
        return None

    def _legal(self, player: PlayerId) -> list[str]:
        r, c = self.fire.crews[self.players.index(player)]
        moves = [
            f"move {d}"
            for d, (dr, dc) in DIRS.items()
            if self._cell(r + dr, c + dc) not in (None,) and not isinstance(self._cell(r + dr, c + dc), int)
        ]
        if self.fire.water > 0:
            if isinstance(self._cell(r, c), int):
                moves.append("douse here")
            moves += [
                f"douse {d}" for d, (dr, dc) in DIRS.items() if isinstance(self._cell(r + dr, c + dc), int)
            ]
        moves.append(WAIT)
        return moves

    def _apply(self, actions: dict[PlayerId, str]) -> None:
        fire = self.fire
        for player in self.players:  # seat order: two crews dousing one cell use one unit
            action = actions[player]
            index = self.players.index(player)
            fire.last[index] = action
            verb, _, where = action.partition(" ")
            r, c = fire.crews[index]
            if verb == "move":
                dr, dc = DIRS[where]
                if self._cell(r + dr, c + dc) is not None and not isinstance(self._cell(r + dr, c + dc), int):
                    fire.crews[index] = (r + dr, c + dc)
            elif verb == "douse" and fire.water > 0:
                dr, dc = DIRS.get(where, (0, 0))
                if isinstance(self._cell(r + dr, c + dc), int):
                    fire.cells[r + dr][c + dc] = OUT
                    fire.water -= 1
                    fire.water_used += 1
        self._spread()
        fire.rounds += 1
        if not fire.burning() and self._success():
            for player in self.players:
                self._reward(player, 1.0)

    def _spread(self) -> None:
        fire, n = self.fire, self.size
        burning = fire.burning()
        for r, c in burning:
            for dr, dc in DIRS.values():
                nr, nc = r + dr, c + dc
                if 0 <= nr < n and 0 <= nc < n and fire.cells[nr][nc] == FOREST:
                    fire.heat[nr][nc] += 1
        for r, c in burning:
            left = fire.cells[r][c] - 1
            fire.cells[r][c] = left if left > 0 else ASH
        for r in range(n):
            for c in range(n):
                if fire.cells[r][c] == FOREST and fire.heat[r][c] >= fire.dryness[r][c]:
                    fire.cells[r][c] = self.burn

    def _success(self) -> bool:
        fire = self.fire
        return not fire.burning() and fire.forest > 0 and fire.saved() / fire.forest >= self.target

    def _over(self) -> tuple[bool, bool]:
        if not self.fire.burning():
            return True, False
        return False, self.fire.rounds >= self.max_rounds

    def _map(self) -> list[str]:
        fire = self.fire
        rows = []
        for r, row in enumerate(fire.cells):
            line = ""
            for c, v in enumerate(row):
                crew = next((str(i) for i, pos in enumerate(fire.crews) if pos == (r, c)), None)
                line += crew or ("*" if isinstance(v, int) else v)
            rows.append(line)
        return rows

    def _turn_view(self, player: PlayerId) -> tuple[str, dict[str, Any]]:
        fire = self.fire
        index = self.players.index(player)
        r, c = fire.crews[index]
        lines = [
            f"Round {fire.rounds + 1} of {self.max_rounds}. Water left: {fire.water}. "
            f"Burning cells: {len(fire.burning())}. "
            f"Forest saved so far: {fire.saved()}/{fire.forest}.",
            f"You are crew {index} at row {r}, column {c}.",
            *self._map(),
        ]
        if fire.last:
            lines.append(
                "Last actions: " + ", ".join(f"crew {i}: {a}" for i, a in sorted(fire.last.items())) + "."
            )
        return "\n".join(lines), {"position": (r, c), "water": fire.water, "burning": fire.burning()}

    def _final_info(self) -> dict[str, Any]:
        fire = self.fire
        saved = fire.saved() / fire.forest if fire.forest else 0.0
        return {
            "procgen": {
                "world": "wildfire",
                "players": len(self.players),
                "success": self._success(),
                "rounds": fire.rounds,
                "measure": round(saved, 4),
                "upper_bound": round(self.upper_bound, 4),
                "water_used": fire.water_used,
            }
        }

    def _render(self) -> str:
        return "\n".join(self._map()) + f"\nwater {self.fire.water}, round {self.fire.rounds}"

    # ----- the team planner --------------------------------------------------------------------------
    def solver_action(self, player: PlayerId) -> str:
        if self.core.done:
            return WAIT
        return self._team_plan()[self.players.index(player)]

    def _threat(self, cell: tuple[int, int]) -> int:
        r, c = cell
        return sum(self._cell(r + dr, c + dc) == FOREST for dr, dc in DIRS.values())

    def _team_plan(self) -> list[str]:
        fire = self.fire
        burning = fire.burning()
        plan = []
        taken: set[tuple[int, int]] = set()
        for index, (r, c) in enumerate(fire.crews):
            legal = self._legal(self.players[index])
            douses = [a for a in legal if a.startswith("douse")]
            if douses:
                # Put out the neighbour threatening the most forest.
                best = max(douses, key=lambda a: self._threat(_target(r, c, a.split()[1])))
                taken.add(_target(r, c, best.split()[1]))
                plan.append(best)
                continue
            free = [cell for cell in burning if cell not in taken] or burning
            if not free:
                plan.append(WAIT)
                continue
            goal = min(
                free, key=lambda cell: (abs(cell[0] - r) + abs(cell[1] - c), -self._threat(cell), cell)
            )
            taken.add(goal)
            plan.append(self._step_to(index, goal, legal))
        return plan

    def _step_to(self, index: int, goal: tuple[int, int], legal: list[str]) -> str:
        r, c = self.fire.crews[index]
        options = []
        for move in legal:
            if move.startswith("move"):
                dr, dc = DIRS[move.split()[1]]
                options.append((abs(goal[0] - r - dr) + abs(goal[1] - c - dc), move))
        return min(options)[1] if options else WAIT


def _target(r: int, c: int, where: str) -> tuple[int, int]:
    dr, dc = DIRS.get(where, (0, 0))
    return r + dr, c + dc


__all__ = ["Wildfire"]
