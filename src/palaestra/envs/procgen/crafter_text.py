"""`crafter:TASK`: the real Crafter (Hafner, 2021; the `crafter` package) played as text by one agent.

The world, its generation, creatures, day and night, hunger and thirst are Crafter's own: each turn
the agent's answer is one of Crafter's 17 actions, passed to `crafter.Env.step`. What changes is
the observation: instead of pixels, the text is built from Crafter's semantic map and inventory:

- a 9 x 7 window around the player (Crafter's local view), one character per cell (legend in the
  rules; `@` is the player, `^ v < >` its facing), row 0 at the top ("up" is `move_up`);
- what the player faces, its health, food, drink and energy, and its inventory.

Tasks: `crafter:ACHIEVEMENT` (one of Crafter's 22, e.g. `collect_wood`, `place_table`,
`make_wood_pickaxe`): reward 1 and the episode ends when it unlocks; `crafter:all`: the whole game,
reward 1 for each achievement unlocked the first time (Crafter's own unlock reward; its health
reward is left out), scored by the achievements (`palaestra.eval.procgen`). A dead player ends
the episode. Options: `length` (steps before truncation; default 300 for one achievement, 1000 for
`all`), `area` (the world's side, default 64 as in Crafter; smaller worlds generate faster).

The solver is a scripted early-game route from the true state: breadth-first search over walkable
cells to the nearest needed material, face it, `do`; place a table when none is near; make the
tool. It reaches `collect_wood`, `collect_sapling`, `collect_drink`, `place_table`,
`make_wood_pickaxe`, `make_wood_sword`, `collect_stone`, `place_stone`, `make_stone_pickaxe`,
`collect_coal`, `place_plant` (and follows the same route in `all`); it does not fight or sleep.
Needs `pip install 'palaestra[procgen]'`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from typing import Any

from palaestra.core.env import PlayerId
from palaestra.core.registry import EnvError
from palaestra.envs.procgen.base import MAX_ANSWER_CHARS, ProcgenEnv, whole_option

ACHIEVEMENTS = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)  # fmt: skip
MATERIAL_CHARS = {
    None: " ", "water": "~", "grass": ".", "stone": "#", "path": "_", "sand": ":", "tree": "T",
    "lava": "!", "coal": "c", "iron": "i", "diamond": "d", "table": "t", "furnace": "f",
}  # fmt: skip
OBJECT_CHARS = {"Cow": "C", "Zombie": "Z", "Skeleton": "S", "Arrow": "*", "Plant": "p"}
FACING = {(0, -1): "^", (0, 1): "v", (-1, 0): "<", (1, 0): ">"}
MOVES = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}
WALKABLE = ("grass", "sand", "path")
SOURCES = {
    "wood": "tree",
    "sapling": "grass",
    "drink": "water",
    "stone": "stone",
    "coal": "coal",
    "iron": "iron",
    "diamond": "diamond",
}
"""The material each `collect_*` achievement takes its item from."""
VIEW_W, VIEW_H = 9, 7
ROUTE = (
    "collect_wood", "place_table", "make_wood_pickaxe", "make_wood_sword", "collect_sapling",
    "place_plant", "collect_drink", "collect_stone", "place_stone", "make_stone_pickaxe", "collect_coal",
)  # fmt: skip
"""The achievements the scripted solver works through in `crafter:all`, in order."""


def _load_crafter() -> Any:
    try:
        import crafter
    except ImportError as exc:
        raise EnvError("crafter: needs the crafter package: pip install 'palaestra[procgen]'") from exc
    return crafter


class CrafterText(ProcgenEnv):
    """Crafter as text for one agent (see the module docstring)."""

    game = "crafter"
    title = "Crafter (as text)"
    idle_action = "noop"

    def __init__(
        self,
        *,
        task: str = "collect_wood",
        length: int | None = None,
        area: int = 64,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
    ) -> None:
        if task != "all" and task not in ACHIEVEMENTS:
            raise EnvError(
                f"crafter: unknown task {task!r}; give an achievement ({', '.join(ACHIEVEMENTS)}) or all"
            )
        super().__init__(num_players=1, retries=retries, max_answer_chars=max_answer_chars)
        crafter = _load_crafter()
        self.task = task
        self.length = whole_option(
            "length", length if length is not None else (1000 if task == "all" else 300), 1
        )
        self.area = whole_option("area", area, 16, 256)
        self.actions = tuple(crafter.constants.actions)
        self.game_env: Any = None
        self.unlocked: list[str] = []
        self.steps = 0
        self.dead = False
        self.last_action = ""

    # ----- Crafter's world, read ------------------------------------------------------------------------
    @property
    def player(self) -> Any:
        return self.game_env._player

    def _material(self, x: int, y: int) -> str | None:
        material, _ = self.game_env._world[(x, y)]
        return material  # type: ignore[no-any-return]

    def _cell_char(self, x: int, y: int) -> str:
        world = self.game_env._world
        if not (0 <= x < world.area[0] and 0 <= y < world.area[1]):
            return " "
        material, obj = world[(x, y)]
        if obj is not None:
            if obj is self.player:
                fx, fy = (int(v) for v in self.player.facing)
                return FACING[(fx, fy)]
            return OBJECT_CHARS.get(type(obj).__name__, "?")
        return MATERIAL_CHARS.get(material, "?")

    def _facing(self) -> str:
        px, py = (int(v) for v in self.player.pos)
        fx, fy = (int(v) for v in self.player.facing)
        world = self.game_env._world
        material, obj = world[(px + fx, py + fy)]
        if obj is not None:
            return type(obj).__name__.lower()
        return material or "the edge of the world"

    # ----- the loop -------------------------------------------------------------------------------------
    def _setup(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        crafter = _load_crafter()
        seed = rng.randrange(2**31 - 1)
        # A fresh Crafter env per episode: its world seed mixes its episode count in.
        self.game_env = crafter.Env(area=(self.area, self.area), length=self.length, seed=seed, reward=True)
        self.game_env._obs = lambda: None  # text only: skip rendering the pixel view
        self.game_env.reset()
        # Never rendered: dropping the textures keeps snapshots small.
        self.game_env._textures = self.game_env._local_view = self.game_env._item_view = None
        self.world = self.game_env
        self.unlocked, self.steps, self.dead, self.last_action = [], 0, False, ""

    def _rules(self) -> str:
        goal = (
            "unlock as many of Crafter's 22 achievements as you can (1 point each, the first time)"
            if self.task == "all"
            else f"unlock the achievement {self.task} (1 point; the game then ends)"
        )
        legend = (
            ", ".join(f"{c}={m}" for m, c in MATERIAL_CHARS.items() if m)
            + ", "
            + ", ".join(f"{c}={name.lower()}" for name, c in OBJECT_CHARS.items())
        )
        return (
            f"Crafter, a 2D survival world. Goal: {goal}, within {self.length} steps. You see a "
            f"{VIEW_W}x{VIEW_H} window around you; you are the arrow (^ v < > your facing). Map legend: "
            f"{legend}. move_* walks (or turns towards a blocked cell), do collects or hits what you face "
            "(trees give wood; stone, coal need a wood pickaxe; iron a stone pickaxe), place_* puts a table "
            "(wood), stone, furnace or plant in front of you, make_* crafts next to a table (and a furnace "
            "for iron tools). Eat, drink and sleep or your health falls; lava kills."
        )

    def _player_info(self, player: PlayerId) -> str:
        return "You are the only player (player_0)."

    def _legal(self, player: PlayerId) -> list[str]:
        return list(self.actions)

    def _apply(self, actions: dict[PlayerId, str]) -> None:
        action = actions["player_0"]
        self.last_action = action
        _, _, _, info = self.game_env.step(self.actions.index(action))
        self.steps += 1
        fresh = [
            name for name, count in info["achievements"].items() if count > 0 and name not in self.unlocked
        ]
        for name in sorted(fresh):
            self.unlocked.append(name)
            if self.task in ("all", name):
                self._reward("player_0", 1.0)
        self.dead = self.player.health <= 0

    def _over(self) -> tuple[bool, bool]:
        if self.dead or (self.task != "all" and self.task in self.unlocked):
            return True, False
        return False, self.steps >= self.length

    def _turn_view(self, player: PlayerId) -> tuple[str, dict[str, Any]]:
        px, py = (int(v) for v in self.player.pos)
        rows = [
            "".join(self._cell_char(x, y) for x in range(px - VIEW_W // 2, px + VIEW_W // 2 + 1))
            for y in range(py - VIEW_H // 2, py + VIEW_H // 2 + 1)
        ]
        inventory = self.player.inventory
        vitals = ", ".join(f"{k} {inventory[k]}" for k in ("health", "food", "drink", "energy"))
        items = ", ".join(
            f"{k} {v}" for k, v in inventory.items() if v and k not in ("health", "food", "drink", "energy")
        )
        lines = [
            f"Step {self.steps + 1} of {self.length}."
            + (f" Last action: {self.last_action}." if self.last_action else "")
        ]
        lines += rows
        lines.append(f"Facing: {self._facing()}. {vitals}. Inventory: {items or 'nothing'}.")
        if self.unlocked:
            lines.append(f"Achievements: {', '.join(self.unlocked)}.")
        record = {
            "view": rows,
            "inventory": dict(inventory),
            "facing": self._facing(),
            "achievements": list(self.unlocked),
        }
        return "\n".join(lines), record

    def _final_info(self) -> dict[str, Any]:
        success = len(self.unlocked) > 0 if self.task == "all" else self.task in self.unlocked
        return {
            "procgen": {
                "world": "crafter",
                "task": self.task,
                "success": success,
                "achievements": list(self.unlocked),
                "steps": self.steps,
                "dead": self.dead,
            }
        }

    def _render(self) -> str:
        if self.game_env is None:
            return "(no world)"
        inventory = {k: v for k, v in self.player.inventory.items() if v}
        return f"step {self.steps}/{self.length}; inventory {inventory}; achievements {self.unlocked}"

    # ----- the scripted solver ----------------------------------------------------------------------------
    def solver_action(self, player: PlayerId) -> str:
        if self.game_env is None or self.core.done:
            return self.idle_action
        targets = ROUTE if self.task == "all" else (self.task,)
        for target in targets:
            if target not in self.unlocked:
                return self._toward(target)
        return self.idle_action

    def _near(self, material: str) -> bool:
        px, py = (int(v) for v in self.player.pos)
        return any(self._material(px + dx, py + dy) == material for dx in (-1, 0, 1) for dy in (-1, 0, 1))

    def _obtain(self, uses: Mapping[str, int]) -> str | None:
        """The next action towards the first item of `uses` the player lacks; None when it has all."""
        inventory = self.player.inventory
        for item, amount in uses.items():
            if inventory[item] < amount:
                return self._toward(f"collect_{item}")
        return None

    def _toward(self, achievement: str) -> str:
        """The next action of the scripted route to `achievement` (requirements from Crafter's own
        tables: `crafter.constants`)."""
        constants = _load_crafter().constants
        kind, _, name = achievement.partition("_")
        if kind == "collect":
            source = SOURCES.get(name)
            if source is None:
                return self.idle_action
            for tool, amount in constants.collect[source]["require"].items():
                if self.player.inventory[tool] < amount:
                    return self._toward(f"make_{tool}")
            return self._fetch(source) or self.idle_action
        if kind == "place":
            return self._obtain(constants.place[name]["uses"]) or self._step_for(achievement)
        if kind == "make":
            recipe = constants.make[name]
            # Materials first, then the station: fetching wood away from a table and walking back
            # for each missing item would go back and forth.
            missing = self._obtain(recipe["uses"])
            if missing is not None:
                return missing
            for station in recipe["nearby"]:
                if not self._near(station):
                    # Walk back to a station already placed, else place one.
                    return self._fetch(station, missing=None) or self._toward(f"place_{station}")
            return achievement
        return self.idle_action

    def _step_for(self, action: str) -> str:
        """`action` if the cell faced takes it (placing needs grass, sand or path), else turn to one."""
        if action.startswith("make_"):
            return action
        wanted = ("grass",) if action == "place_plant" else ("grass", "sand", "path")
        px, py = (int(v) for v in self.player.pos)
        fx, fy = (int(v) for v in self.player.facing)
        material, obj = self.game_env._world[(px + fx, py + fy)]
        if material in wanted and obj is None:
            return action
        for move, (dx, dy) in MOVES.items():
            material, obj = self.game_env._world[(px + dx, py + dy)]
            if material in wanted and obj is None:
                return move  # steps onto it, facing on: the cell ahead is most often free too
        return self._fetch("grass") or self.idle_action

    def _fetch(self, material: str, missing: str | None = "noop") -> str | None:
        """The next move towards facing the nearest `material` cell, then `do`; `missing` (the idle
        action by default) when no such cell can be reached."""
        px, py = (int(v) for v in self.player.pos)
        fx, fy = (int(v) for v in self.player.facing)
        if (
            self._material(px + fx, py + fy) == material
            and self.game_env._world[(px + fx, py + fy)][1] is None
        ):
            return "do" if material not in ("table", "furnace") else "noop"
        for move, (dx, dy) in MOVES.items():
            if self._material(px + dx, py + dy) == material and material not in WALKABLE:
                return move  # a blocked cell: the move only turns the player to face it
        world = self.game_env._world
        start = (px, py)
        came: dict[tuple[int, int], str | None] = {start: None}
        queue = deque([start])
        while queue:
            x, y = queue.popleft()
            for move, (dx, dy) in MOVES.items():
                nx, ny = x + dx, y + dy
                if (nx, ny) in came:
                    continue
                cell, obj = world[(nx, ny)]
                if cell == material and (x, y) != start:
                    return _first_move(came, (x, y), start)
                if cell in WALKABLE and obj is None:
                    came[(nx, ny)] = move
                    queue.append((nx, ny))
        return missing


def _first_move(
    came: dict[tuple[int, int], str | None], cell: tuple[int, int], start: tuple[int, int]
) -> str:
    """The first move of the search path from `start` to `cell`."""
    path = []
    while cell != start:
        move = came[cell]
        assert move is not None
        path.append(move)
        dx, dy = MOVES[move]
        cell = (cell[0] - dx, cell[1] - dy)
    return path[-1]


__all__ = ["ACHIEVEMENTS", "CrafterText"]
