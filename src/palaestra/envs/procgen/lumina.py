"""LUMINA-style skill probes: List, Tree and Grid worlds with oracle interventions.

Each world is generated from its seed with two difficulty knobs, `size` and `depth`, has an exact
solver, and hides exactly what three skills must supply (docs/references.md, LUMINA):

- the **task** (the target, the map, the goal) is told once, in the first turn block: keeping it
  is long-context skill (*history*);
- the **state** changes with every action, but feedback never shows it: knowing it is *state
  tracking* (the player must apply its own actions to the state it was shown at the start);
- the **plan** (which action brings the goal closer) must be worked out: *planning*.

Worlds (`lumina:<world>?size=..&depth=..`):

- `list`: a list of `size` distinct letters must become a target order by `swap i j` actions;
  `depth` is the least number of swaps needed (1 to size-1). Solver: put the right letter into
  the first wrong position (each such swap splits a cycle of the permutation, so it is optimal).
- `tree`: a tree with `size` children per node and `depth` levels below the root; the player starts
  at a leaf and must walk (`go K`: the K-th child, `up`: the parent) to the goal node, which lies
  `depth` levels deep in another branch. The map is told once. Solver: up to the common ancestor,
  then down (the unique shortest path).
- `grid`: a `size` x `size` maze with walls and `depth` numbered waypoints to visit in order
  (`north`, `south`, `east`, `west`); the map is told once, a move's feedback says only whether it
  moved. Solver: breadth-first search over (cell, next waypoint).

Every world also has `wait` (does nothing): the do-nothing agent's move. The episode ends with
reward 1 when the goal is reached, or truncated at `max_turns` (default: twice the optimal length
plus two) with reward 0; invalid answers are asked again once, then count as `wait`, and every
answer uses a turn.

Oracle interventions (`oracle=plan|state|history`, several joined by `+`) take over one skill:

- `plan`: each turn block adds `ORACLE PLAN: next <action>`, the solver's next action;
- `state`: each turn block adds `ORACLE STATE: <the true state>`;
- `history`: each turn block is rewritten to be Markov: it restates the task and the start state
  with the actions taken so far (not the resulting state), so an agent may drop every earlier
  message.

The structured log (`ProcgenView.log()`) records per turn what the text says: `task` and
`initial` (first turn), `action` and `feedback` (the previous action and what it did), `plan`,
`state`, `history` (`{"task", "initial", "actions"}`) when the oracle gave them.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from palaestra.core.env import PlayerId
from palaestra.core.registry import EnvError
from palaestra.envs.procgen.base import (
    MAX_ANSWER_CHARS,
    ProcgenEnv,
    choice_option,
    oracle_name,
    parse_oracles,
    whole_option,
)

ORACLES = ("plan", "state", "history")
WORLDS = ("list", "tree", "grid")
WAIT = "wait"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
_GENERATION_TRIES = 200


# ----- the worlds' rules, as pure functions ---------------------------------------------------------------
class Puzzle:
    """One generated world: its task, its start state, and its rules as pure functions.

    `step(state, action) -> (state, feedback)` never fails (an action that cannot be done leaves
    the state as it is and says so); `solve(state)` is an optimal plan from `state`; `actions` is
    the constant legal vocabulary (so the legal list never leaks the state).
    """

    world: ClassVar[str] = ""
    actions: tuple[str, ...] = ()
    initial: Any = None

    def step(self, state: Any, action: str) -> tuple[Any, str]:
        raise NotImplementedError

    def is_goal(self, state: Any) -> bool:
        raise NotImplementedError

    def solve(self, state: Any) -> list[str]:
        raise NotImplementedError

    def task(self) -> dict[str, Any]:
        """The task as data (target, map, goal)."""
        raise NotImplementedError

    def task_text(self) -> str:
        raise NotImplementedError

    def state_text(self, state: Any) -> str:
        raise NotImplementedError

    def rules(self) -> str:
        raise NotImplementedError

    def replay(self, actions: list[str]) -> Any:
        """The state after `actions` from the start state."""
        state = self.initial
        for action in actions:
            state, _ = self.step(state, action)
        return state


def _split_into_cycles(rng: random.Random, positions: list[int], cycles: int) -> list[list[int]]:
    """`positions` shuffled and cut into `cycles` non-empty runs."""
    rng.shuffle(positions)
    cuts = sorted(rng.sample(range(1, len(positions)), cycles - 1)) if cycles > 1 else []
    bounds = [0, *cuts, len(positions)]
    return [positions[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class ListPuzzle(Puzzle):
    """`size` distinct letters; the start is the target permuted with exactly size-depth cycles."""

    world: ClassVar[str] = "list"
    target: tuple[str, ...] = ()
    initial: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()

    @classmethod
    def generate(cls, rng: random.Random, size: int, depth: int) -> ListPuzzle:
        if depth > size - 1:
            raise EnvError(f"lumina:list: depth (least swaps) is at most size-1 = {size - 1}, got {depth}")
        target = tuple(rng.sample(LETTERS[: max(size, 8)], size))
        start = list(target)
        # size - cycles = depth swaps are needed; a cycle (p1 p2 ... pk) moves target[p_i] to p_{i+1}.
        for cycle in _split_into_cycles(rng, list(range(size)), size - depth):
            for here, there in zip(cycle, cycle[1:] + cycle[:1], strict=True):
                start[there] = target[here]
        actions = (*(f"swap {i} {j}" for i in range(size) for j in range(i + 1, size)), WAIT)
        return cls(target=target, initial=tuple(start), actions=actions)

    def step(self, state: tuple[str, ...], action: str) -> tuple[tuple[str, ...], str]:
        if action == WAIT:
            return state, "You waited."
        _, i, j = action.split()
        a, b = int(i), int(j)
        items = list(state)
        items[a], items[b] = items[b], items[a]
        return tuple(items), f"You swapped positions {a} and {b}."

    def is_goal(self, state: tuple[str, ...]) -> bool:
        return state == self.target

    def solve(self, state: tuple[str, ...]) -> list[str]:
        items, plan = list(state), []
        for i, wanted in enumerate(self.target):
            if items[i] != wanted:
                j = items.index(wanted, i + 1)
                items[i], items[j] = items[j], items[i]
                plan.append(f"swap {i} {j}")
        return plan

    def task(self) -> dict[str, Any]:
        return {"target": list(self.target)}

    def task_text(self) -> str:
        return f"Target list: [{', '.join(self.target)}]."

    def state_text(self, state: tuple[str, ...]) -> str:
        return f"[{', '.join(state)}]"

    def rules(self) -> str:
        size = len(self.target)
        return (
            f"There is a hidden list of {size} letters (positions 0 to {size - 1}). You are shown it once, "
            "at the start, with the target list. Each turn, `swap i j` exchanges the letters at positions "
            "i and j; the feedback says only that you swapped them, never the list. Make the list equal "
            "to the target. The game ends as soon as it does (you win) or when the turns run out."
        )


@dataclass
class TreePuzzle(Puzzle):
    """A complete tree, `branching` children per node, `depth` levels; start and goal are leaves of
    different root branches (the path climbs to the root: 2 * depth moves)."""

    world: ClassVar[str] = "tree"
    names: tuple[str, ...] = ()
    parent: tuple[int, ...] = ()
    children: tuple[tuple[int, ...], ...] = ()
    initial: int = 0
    goal: int = 0
    actions: tuple[str, ...] = ()

    @classmethod
    def generate(cls, rng: random.Random, branching: int, depth: int) -> TreePuzzle:
        parent, levels = [-1], [[0]]
        children: list[list[int]] = [[]]
        for _ in range(depth):
            level = []
            for node in levels[-1]:
                for _ in range(branching):
                    child = len(parent)
                    parent.append(node)
                    children.append([])
                    children[node].append(child)
                    level.append(child)
            levels.append(level)
        names = _node_names(rng, len(parent))
        first, second = rng.sample(range(branching), 2)
        start = rng.choice([leaf for leaf in levels[-1] if _branch(parent, leaf) == children[0][first]])
        goal = rng.choice([leaf for leaf in levels[-1] if _branch(parent, leaf) == children[0][second]])
        actions = (*(f"go {k}" for k in range(1, branching + 1)), "up", WAIT)
        return cls(
            names=tuple(names),
            parent=tuple(parent),
            children=tuple(tuple(c) for c in children),
            initial=start,
            goal=goal,
            actions=actions,
        )

    def step(self, state: int, action: str) -> tuple[int, str]:
        if action == WAIT:
            return state, "You waited."
        if action == "up":
            if self.parent[state] < 0:
                return state, "You are at the top; there is no way up."
            return self.parent[state], "You climbed up one level."
        k = int(action.split()[1])
        if k > len(self.children[state]):
            return state, f"There is no path {k} here."
        return self.children[state][k - 1], f"You took path {k} down."

    def is_goal(self, state: int) -> bool:
        return state == self.goal

    def _ancestors(self, node: int) -> list[int]:
        chain = [node]
        while self.parent[chain[-1]] >= 0:
            chain.append(self.parent[chain[-1]])
        return chain

    def solve(self, state: int) -> list[str]:
        up, down = self._ancestors(state), self._ancestors(self.goal)
        common = next(node for node in up if node in down)
        plan = ["up"] * up.index(common)
        for node in reversed(down[: down.index(common)]):
            plan.append(f"go {self.children[self.parent[node]].index(node) + 1}")
        return plan

    def task(self) -> dict[str, Any]:
        return {"goal": self.names[self.goal], "map": self.map_lines()}

    def map_lines(self) -> list[str]:
        return [
            f"{self.names[node]}: " + ", ".join(f"{k}={self.names[c]}" for k, c in enumerate(kids, 1))
            for node, kids in enumerate(self.children)
            if kids
        ]

    def task_text(self) -> str:
        return (
            "Map (node: path=child): "
            + "; ".join(self.map_lines())
            + f". Goal: reach {self.names[self.goal]}."
        )

    def state_text(self, state: int) -> str:
        return f"you are at {self.names[state]}"

    def rules(self) -> str:
        return (
            "You stand at a node of a tree of named nodes; the map and the goal are shown once, at the "
            "start, with where you stand. Each turn, `go K` walks down the K-th path of the node you are "
            "at, `up` climbs to its parent. The feedback says only which way you went, never where you "
            "are. Reach the goal node: the game ends as soon as you do (you win) or when the turns run out."
        )


def _branch(parent: list[int], node: int) -> int:
    """The child of the root above `node`."""
    while parent[parent[node]] >= 0:
        node = parent[node]
    return node


def _node_names(rng: random.Random, count: int) -> list[str]:
    """Distinct short names (`ka`, `lo`, `mu3`, ...) in a seeded order."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    rng.shuffle(syllables)
    return [
        syllables[i % len(syllables)] + (str(i // len(syllables)) if i >= len(syllables) else "")
        for i in range(count)
    ]


MOVES = {"north": (-1, 0), "south": (1, 0), "west": (0, -1), "east": (0, 1)}


@dataclass
class GridPuzzle(Puzzle):
    """A `size` x `size` maze (walls `#`), a start and `depth` waypoints to visit in order."""

    world: ClassVar[str] = "grid"
    rows: tuple[str, ...] = ()
    waypoints: tuple[tuple[int, int], ...] = ()
    initial: tuple[int, int, int] = (0, 0, 0)
    actions: tuple[str, ...] = ()

    @classmethod
    def generate(cls, rng: random.Random, size: int, depth: int) -> GridPuzzle:
        cells = [(r, c) for r in range(size) for c in range(size)]
        if depth + 1 > size * size // 2:
            raise EnvError(
                f"lumina:grid: depth (waypoints) is at most {size * size // 2 - 1} on a {size}x{size} grid"
            )
        for _ in range(_GENERATION_TRIES):
            walls = {cell for cell in cells if rng.random() < 0.22}
            free = [cell for cell in cells if cell not in walls]
            if len(free) < depth + 1 or not _connected(free):
                continue
            start, *points = rng.sample(free, depth + 1)
            rows = tuple("".join("#" if (r, c) in walls else "." for c in range(size)) for r in range(size))
            return cls(
                rows=rows,
                waypoints=tuple(points),
                initial=(start[0], start[1], 0),
                actions=(*MOVES, WAIT),
            )
        raise EnvError(f"lumina:grid: could not generate a connected {size}x{size} maze")  # pragma: no cover

    @property
    def size(self) -> int:
        return len(self.rows)

    def _free(self, r: int, c: int) -> bool:
        return 0 <= r < self.size and 0 <= c < self.size and self.rows[r][c] != "#"

    def step(self, state: tuple[int, int, int], action: str) -> tuple[tuple[int, int, int], str]:
        if action == WAIT:
            return state, "You waited."
        r, c, reached = state
        dr, dc = MOVES[action]
        if not self._free(r + dr, c + dc):
            return state, f"A wall blocks the way {action}."
        r, c = r + dr, c + dc
        note = ""
        if reached < len(self.waypoints) and (r, c) == self.waypoints[reached]:
            reached += 1
            note = f" You reached waypoint {reached}."
        return (r, c, reached), f"You moved {action}.{note}"

    def is_goal(self, state: tuple[int, int, int]) -> bool:
        return state[2] == len(self.waypoints)

    def solve(self, state: tuple[int, int, int]) -> list[str]:
        came: dict[tuple[int, int, int], tuple[tuple[int, int, int], str] | None] = {state: None}
        queue = deque([state])
        while queue:
            here = queue.popleft()
            if self.is_goal(here):
                plan = []
                while came[here] is not None:
                    here, move = came[here]  # type: ignore[misc]
                    plan.append(move)
                return plan[::-1]
            for move in MOVES:
                there, _ = self.step(here, move)
                if there not in came:
                    came[there] = (here, move)
                    queue.append(there)
        return []  # unreachable: generation keeps the free cells connected

    def task(self) -> dict[str, Any]:
        return {"map": self.map_rows(), "waypoints": [list(p) for p in self.waypoints]}

    def map_rows(self) -> list[str]:
        grid = [list(row) for row in self.rows]
        for number, (r, c) in enumerate(self.waypoints, 1):
            grid[r][c] = str(number)
        return ["".join(row) for row in grid]

    def task_text(self) -> str:
        return "Map (row 0 at the top, # walls, digits the waypoints):\n" + "\n".join(self.map_rows())

    def state_text(self, state: tuple[int, int, int]) -> str:
        r, c, reached = state
        return f"row {r}, column {c}, waypoints reached {reached}/{len(self.waypoints)}"

    def rules(self) -> str:
        return (
            f"You walk a {self.size}x{self.size} maze. The map and your start cell are shown once, at the "
            f"start. Visit the {len(self.waypoints)} numbered waypoint(s) in order. Each turn, move north "
            "(up), south, east (right) or west; the feedback says only whether you moved and when you reach "
            "the next waypoint, never where you are. The game ends when the last waypoint is reached (you "
            "win) or when the turns run out."
        )


def _connected(free: list[tuple[int, int]]) -> bool:
    cells = set(free)
    seen = {free[0]}
    queue = deque([free[0]])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES.values():
            there = (r + dr, c + dc)
            if there in cells and there not in seen:
                seen.add(there)
                queue.append(there)
    return len(seen) == len(cells)


# ----- the env ----------------------------------------------------------------------------------------------
_DEFAULT_KNOBS = {"list": (4, 2), "tree": (2, 2), "grid": (4, 1)}
_KNOB_BOUNDS = {"list": ((2, 12), (1, 11)), "tree": ((2, 5), (1, 5)), "grid": ((3, 10), (1, 8))}


class LuminaEnv(ProcgenEnv):
    """One LUMINA-style world (see the module docstring). One seat, `player_0`.

    Options: `world` (list, tree, grid), `size`, `depth`, `oracle` (none, plan, state, history or
    several joined by +), `max_turns` (default 2 x optimal + 2), `retries`, `max_answer_chars`.
    """

    game = "lumina"
    idle_action = WAIT

    def __init__(
        self,
        *,
        world: str = "list",
        size: int | None = None,
        depth: int | None = None,
        oracle: str = "none",
        max_turns: int | None = None,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
    ) -> None:
        super().__init__(num_players=1, retries=retries, max_answer_chars=max_answer_chars)
        self.world_name = choice_option("world", world, WORLDS)
        default_size, default_depth = _DEFAULT_KNOBS[world]
        (low_size, high_size), (low_depth, high_depth) = _KNOB_BOUNDS[world]
        self.size = whole_option("size", default_size if size is None else size, low_size, high_size)
        self.depth = whole_option("depth", default_depth if depth is None else depth, low_depth, high_depth)
        if self.world_name == "tree" and (self.size ** (self.depth + 1) - 1) // (self.size - 1) > 1000:
            raise EnvError(
                f"lumina:tree: size {self.size} and depth {self.depth} make over 1000 nodes; lower one"
            )
        self.oracles = parse_oracles(oracle, ORACLES)
        self.max_turns_option = None if max_turns is None else whole_option("max_turns", max_turns, 1)
        self.title = f"LUMINA {self.world_name} world"
        self.game = f"lumina_{self.world_name}"
        self.puzzle: Puzzle = ListPuzzle()
        self.state: Any = None
        self.taken: list[str] = []
        self.feedback = ""
        self.optimal = 0
        self.max_turns = 0
        # Fail on impossible knobs at construction, not at the first reset.
        self._generate(random.Random(0))

    def _generate(self, rng: random.Random) -> Puzzle:
        if self.world_name == "list":
            return ListPuzzle.generate(rng, self.size, self.depth)
        if self.world_name == "tree":
            return TreePuzzle.generate(rng, self.size, self.depth)
        return GridPuzzle.generate(rng, self.size, self.depth)

    def _setup(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        self.puzzle = self._generate(rng)
        self.state = self.world = self.puzzle.initial
        self.taken, self.feedback = [], ""
        self.optimal = len(self.puzzle.solve(self.state))
        self.max_turns = self.max_turns_option or 2 * self.optimal + 2

    def _rules(self) -> str:
        return f"{self.puzzle.rules()} You have {self.max_turns} turns; `wait` does nothing."

    def _player_info(self, player: PlayerId) -> str:
        return "You are the only player (player_0)."

    def _legal(self, player: PlayerId) -> list[str]:
        return list(self.puzzle.actions)

    def _apply(self, actions: dict[PlayerId, str]) -> None:
        action = actions["player_0"]
        self.state, self.feedback = self.puzzle.step(self.state, action)
        self.world = self.state
        self.taken.append(action)
        if self.puzzle.is_goal(self.state):
            self._reward("player_0", 1.0)

    def _over(self) -> tuple[bool, bool]:
        if self.puzzle.is_goal(self.state):
            return True, False
        return False, len(self.taken) >= self.max_turns

    def _turn_view(self, player: PlayerId) -> tuple[str, dict[str, Any]]:
        puzzle = self.puzzle
        record: dict[str, Any] = {}
        lines = [f"Turn {len(self.taken) + 1} of {self.max_turns}."]
        if not self.taken:
            lines += [puzzle.task_text(), f"Start: {puzzle.state_text(puzzle.initial)}."]
            record.update(task=puzzle.task(), initial=puzzle.initial)
        else:
            lines.append(f"Last action: {self.taken[-1]}. {self.feedback}")
            record.update(action=self.taken[-1], feedback=self.feedback)
        if "history" in self.oracles and self.taken:
            done = ", ".join(self.taken)
            lines.append(
                f"ORACLE HISTORY: {puzzle.task_text()} Start: {puzzle.state_text(puzzle.initial)}. "
                f"Your actions so far: {done}."
            )
            record["history"] = {
                "task": puzzle.task(),
                "initial": puzzle.initial,
                "actions": list(self.taken),
            }
        if "state" in self.oracles:
            lines.append(f"ORACLE STATE: {puzzle.state_text(self.state)}.")
            record["state"] = self.state
        if "plan" in self.oracles:
            plan = puzzle.solve(self.state)
            if plan:
                lines.append(f"ORACLE PLAN: next {plan[0]}.")
                record["plan"] = plan[0]
        return "\n".join(lines), record

    def _final_info(self) -> dict[str, Any]:
        success = self.puzzle.is_goal(self.state)
        return {
            "procgen": {
                "world": f"lumina:{self.world_name}",
                "size": self.size,
                "depth": self.depth,
                "oracle": oracle_name(self.oracles),
                "success": success,
                "turns": len(self.taken),
                "optimal": self.optimal,
                "max_turns": self.max_turns,
                "skill_probe": True,
            }
        }

    def solver_action(self, player: PlayerId) -> str:
        plan = self.puzzle.solve(self.state)
        return plan[0] if plan else WAIT

    def world_model(self) -> Puzzle:
        return self.puzzle

    def true_state(self, player: PlayerId) -> Any:
        return self.state

    def _render(self) -> str:
        return (
            f"{self.puzzle.task_text()}\nNow: {self.puzzle.state_text(self.state)}; "
            f"goal reached: {self.puzzle.is_goal(self.state)}; turns used {len(self.taken)}/{self.max_turns}."
        )


__all__ = ["ORACLES", "WORLDS", "GridPuzzle", "ListPuzzle", "LuminaEnv", "Puzzle", "TreePuzzle"]
