"""`xland_text-v0`: an open-ended universe of small text games, composed from a grammar (XLand-style).

A task is a world, its rules and the players' goals, all generated from the seed (docs/references.md,
XLand: a procedurally generated universe of games, cooperative and competitive, with held-out
games for transfer):

- **world**: rooms (all connected to each other) and coloured objects lying in them; each player
  stands in a room and holds at most one object;
- **rules** (production rules): `A + B -> C`: a player holding A in the room where B lies may
  `combine B`; A and B are gone and the player holds C (C exists only once made);
- **goals**, from a grammar of atoms joined by `and`: `hold(who, X)`, `in(X, room)`,
  `near(X, Y)` (both lie in the same room), `at(who, room)`.

Task families are goal templates. Training families: `fetch` (someone holds X), `deliver`
(X lies in a room), `pair` (X and Y lie together), `craft` (someone holds a product), `race`
(competitive: every player wants to hold the same X; the first to hold it wins), `tug`
(competitive, two players: each wants X in its own room). Held-out families, never drawn by
`family=train`, compose the same atoms anew: `craft_deliver` (a product lies in a room),
`gather` (two objects lie in one named room), `race_craft` (competitive: the first to hold the
product wins). `family=train|test|any` draws a family per seed from that split.

Options: `family` (a family, `train`, `test` or `any`), `difficulty` 1-5 (rooms 2-4, objects 2-6,
rules 0-2; craft families get at least one rule), `players` 1-4 (competitive families need 2;
`tug` exactly 2), `max_turns` (rounds; default: twice the solver's rounds plus two), `retries`.

Play: players act in seat order, one action per turn; a round is one turn each. The world is
fully observable: every turn block shows the rooms, who holds what, the rules and the player's
goal, and the legal actions are the ones that do something (plus `wait`). Cooperative tasks share
one goal: when it holds, every player gets 1 and the episode ends. Competitive tasks end when one
player's goal holds: it gets 1, the others 0. At `max_turns` rounds the episode is truncated.

Solver and upper bound: cooperative tasks of one or two players are solved exactly by
breadth-first search over the joint state (whose turn, where everyone is, where the goal's objects
are; `exact = true`); the solver agent plays its seat's part of that plan. With three or four
players the first two plan together and the rest wait: a feasible plan, so `optimal_rounds` is
then an upper bound on the team's best. Competitive tasks have an upper bound instead: the rounds
each player needs alone (`solo_rounds`); the solver agent plays its own shortest plan, replanned
each turn. Reported in `info["procgen"]`: family, `held_out`, difficulty, players, mode, success,
winner, rounds, `optimal_rounds` (with `exact`) or `solo_rounds`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.env import PlayerId
from palaestra.core.registry import EnvError
from palaestra.envs.procgen.base import MAX_ANSWER_CHARS, ProcgenEnv, whole_option

ROOMS = ("hall", "garden", "cellar", "attic", "yard")
COLORS = ("red", "blue", "green", "yellow", "purple", "white")
SHAPES = ("cube", "ball", "cone", "ring", "star")
ABSENT = -1
"""An object's location when it does not exist (a product not yet made, an ingredient used up)."""
WAIT = "wait"

COOPERATIVE = ("fetch", "deliver", "pair", "craft", "craft_deliver", "gather")
COMPETITIVE = ("race", "tug", "race_craft")
TRAIN_FAMILIES = ("fetch", "deliver", "pair", "craft", "race", "tug")
HELD_OUT_FAMILIES = ("craft_deliver", "gather", "race_craft")
FAMILIES = TRAIN_FAMILIES + HELD_OUT_FAMILIES
SPLITS = ("train", "test", "any")
_LEVELS = {1: (2, 2, 0), 2: (2, 3, 1), 3: (3, 4, 1), 4: (4, 4, 1), 5: (4, 6, 2)}
"""difficulty -> (rooms, objects lying in the world at the start, rules)."""
_SEARCH_LIMIT = 400_000


def held(player: int) -> int:
    """The location code of an object held by `player`."""
    return -2 - player


Atom = tuple[Any, ...]
"""("hold", who|None, obj), ("in", obj, room), ("near", obj, obj), ("at", who|None, room)."""


@dataclass(frozen=True)
class State:
    """Whose turn it is, each player's room, each object's location (a room, `held(p)` or ABSENT)."""

    turn: int
    rooms: tuple[int, ...]
    locs: tuple[int, ...]


@dataclass
class Task:
    """One generated task."""

    family: str
    rooms: tuple[str, ...]
    objects: tuple[str, ...]
    rules: tuple[tuple[int, int, int], ...]
    start: State
    goals: tuple[tuple[Atom, ...], ...]
    """One conjunction per player (all the same in cooperative tasks)."""
    cooperative: bool
    difficulty: int
    held_out: bool = False
    relevant: dict[int, frozenset[int]] = field(default_factory=dict)


# ----- the rules -------------------------------------------------------------------------------------------
def holding(state: State, player: int) -> int | None:
    code = held(player)
    for obj, loc in enumerate(state.locs):
        if loc == code:
            return obj
    return None


def satisfied(task: Task, state: State, atom: Atom) -> bool:
    kind = atom[0]
    players = range(len(state.rooms))
    if kind == "hold":
        _, who, obj = atom
        return any(state.locs[obj] == held(p) for p in (players if who is None else (who,)))
    if kind == "in":
        _, obj, room = atom
        return bool(state.locs[obj] == room)
    if kind == "near":
        _, first, second = atom
        return state.locs[first] >= 0 and state.locs[first] == state.locs[second]
    _, who, room = atom
    return any(state.rooms[p] == room for p in (players if who is None else (who,)))


def goal_met(task: Task, state: State, player: int) -> bool:
    return all(satisfied(task, state, atom) for atom in task.goals[player])


def legal_moves(task: Task, state: State, player: int, only: frozenset[int] | None = None) -> list[str]:
    """The actions that do something for `player` now (then `wait`); with `only`, pick and combine
    consider only those objects (the solver's search ignores the rest)."""
    here = state.rooms[player]
    moves = [f"go {task.rooms[r]}" for r in range(len(task.rooms)) if r != here]
    mine = holding(state, player)
    lying = [o for o, loc in enumerate(state.locs) if loc == here and (only is None or o in only)]
    if mine is None:
        moves += [f"pick {task.objects[o]}" for o in lying]
    else:
        moves.append(f"drop {task.objects[mine]}")
        for a, b, _ in task.rules:
            if a == mine and b in lying:
                moves.append(f"combine {task.objects[b]}")
    moves.append(WAIT)
    return moves


def apply_move(task: Task, state: State, player: int, move: str) -> State:
    """The state after `player` plays the legal `move` (the turn passes to the next player)."""
    rooms, locs = list(state.rooms), list(state.locs)
    verb, _, rest = move.partition(" ")
    if verb == "go":
        rooms[player] = task.rooms.index(rest)
    elif verb == "pick":
        locs[task.objects.index(rest)] = held(player)
    elif verb == "drop":
        locs[task.objects.index(rest)] = rooms[player]
    elif verb == "combine":
        other = task.objects.index(rest)
        mine = holding(state, player)
        assert mine is not None  # combine is legal only while holding an ingredient
        product = next(c for a, b, c in task.rules if a == mine and b == other)
        locs[mine] = locs[other] = ABSENT
        locs[product] = held(player)
    return State((player + 1) % len(rooms), tuple(rooms), tuple(locs))


def _key(state: State, relevant: frozenset[int], movers: Sequence[int]) -> tuple[Any, ...]:
    """What the search distinguishes: whose turn, where the movers are, the relevant objects'
    places, which movers hold something irrelevant (they must drop it before picking)."""
    junk = tuple(
        any(state.locs[o] == held(p) for o in range(len(state.locs)) if o not in relevant) for p in movers
    )
    rooms = tuple(state.rooms[p] for p in movers)
    return (state.turn, rooms, tuple(state.locs[o] for o in sorted(relevant)), junk)


def _next_turn(state: State, movers: Sequence[int]) -> State:
    """`state` with the turn moved on to the next player in `movers` (the others wait)."""
    players = len(state.rooms)
    turn = state.turn
    while turn not in movers:
        turn = (turn + 1) % players
    return state if turn == state.turn else State(turn, state.rooms, state.locs)


def search(task: Task, start: State, movers: Sequence[int], goal_of: int) -> list[str] | None:
    """A shortest sequence of the `movers`' moves (in turn order; every other player waits, and
    their turns are skipped) from `start` to a state meeting player `goal_of`'s goal; None when
    there is none within the search limit."""
    relevant = task.relevant[goal_of]
    start = _next_turn(start, movers)
    came: dict[tuple[Any, ...], tuple[tuple[Any, ...], str] | None] = {_key(start, relevant, movers): None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        key = _key(state, relevant, movers)
        if goal_met(task, state, goal_of):
            plan: list[str] = []
            while came[key] is not None:
                key, move = came[key]  # type: ignore[misc]
                plan.append(move)
            return plan[::-1]
        if len(came) > _SEARCH_LIMIT:
            return None
        for move in legal_moves(task, state, state.turn, relevant):
            nxt = _next_turn(apply_move(task, state, state.turn, move), movers)
            nkey = _key(nxt, relevant, movers)
            if nkey not in came:
                came[nkey] = (key, move)
                queue.append(nxt)
    return None


# ----- generation -------------------------------------------------------------------------------------
def _relevant(task: Task, goal: Sequence[Atom]) -> frozenset[int]:
    found: set[int] = set()
    for atom in goal:
        if atom[0] in ("hold", "in"):
            found.add(atom[2] if atom[0] == "hold" else atom[1])
        elif atom[0] == "near":
            found.update(atom[1:])
    changed = True
    while changed:
        changed = False
        for a, b, c in task.rules:
            if c in found and not {a, b} <= found:
                found.update((a, b))
                changed = True
    return frozenset(found)


def generate(rng: random.Random, family: str, difficulty: int, players: int) -> Task:
    rooms_n, objects_n, rules_n = _LEVELS[difficulty]
    rooms_n = max(rooms_n, 3) if family == "tug" else rooms_n  # two target rooms, neither the start
    crafting = family in ("craft", "craft_deliver", "race_craft")
    rules_n = max(rules_n, 1) if crafting else rules_n
    rooms = tuple(rng.sample(ROOMS, rooms_n))
    names = [f"{c} {s}" for c in COLORS for s in SHAPES]
    rng.shuffle(names)
    lying = names[:objects_n]
    products = names[objects_n : objects_n + rules_n]
    objects = tuple(lying + products)
    rules = []
    ingredients = list(range(objects_n))
    rng.shuffle(ingredients)
    for index in range(rules_n):
        a, b = ingredients[2 * index % objects_n], ingredients[(2 * index + 1) % objects_n]
        if index and rng.random() < 0.5:
            a = objects_n + index - 1  # a chain: the previous product is an ingredient
        rules.append((a, b, objects_n + index))
    locs = [rng.randrange(rooms_n) for _ in range(objects_n)] + [ABSENT] * rules_n
    start = State(0, tuple(rng.randrange(rooms_n) for _ in range(players)), tuple(locs))
    base = Task(family, rooms, objects, tuple(rules), start, (), family in COOPERATIVE, difficulty)
    base.held_out = family in HELD_OUT_FAMILIES
    goal = _goals(rng, base, players)
    base.goals = goal
    base.relevant = {p: _relevant(base, goal[p]) for p in range(players)}
    return base


def _goals(rng: random.Random, task: Task, players: int) -> tuple[tuple[Atom, ...], ...]:
    lying = [o for o, loc in enumerate(task.start.locs) if loc >= 0]
    product = task.rules[-1][2] if task.rules else None
    rooms = range(len(task.rooms))
    family = task.family
    if family == "fetch":
        goal: tuple[Atom, ...] = (("hold", None, rng.choice(lying)),)
    elif family == "deliver":
        obj = rng.choice(lying)
        goal = (("in", obj, rng.choice([r for r in rooms if r != task.start.locs[obj]])),)
    elif family == "pair":
        first, second = rng.sample(lying, 2)
        goal = (("near", first, second),)
    elif family == "craft":
        goal = (("hold", None, product),)
    elif family == "craft_deliver":
        goal = (("in", product, rng.choice(list(rooms))),)
    elif family == "gather":
        first, second = rng.sample(lying, 2)
        room = rng.choice(
            [r for r in rooms if r not in (task.start.locs[first], task.start.locs[second])] or list(rooms)
        )
        goal = (("in", first, room), ("in", second, room))
    elif family == "race":
        obj = rng.choice(lying)
        return tuple((("hold", p, obj),) for p in range(players))
    elif family == "race_craft":
        return tuple((("hold", p, product),) for p in range(players))
    else:  # tug: each of two players wants the object in its own room
        obj = rng.choice(lying)
        first, second = rng.sample([r for r in rooms if r != task.start.locs[obj]], 2)
        return (("in", obj, first),), (("in", obj, second),)
    return tuple(goal for _ in range(players))


def atom_text(task: Task, atom: Atom, viewer: int) -> str:
    kind = atom[0]
    if kind in ("hold", "at"):
        who = atom[1]
        subject = "someone" if who is None else ("you" if who == viewer else f"player_{who}")
        if kind == "hold":
            verb = "hold" if who == viewer else "holds"
            return f"{subject} {verb} the {task.objects[atom[2]]}"
        return f"{subject} {'are' if who == viewer else 'is'} in the {task.rooms[atom[2]]}"
    if kind == "in":
        return f"the {task.objects[atom[1]]} lies in the {task.rooms[atom[2]]}"
    return f"the {task.objects[atom[1]]} and the {task.objects[atom[2]]} lie in the same room"


def goal_text(task: Task, player: int) -> str:
    return " and ".join(atom_text(task, atom, player) for atom in task.goals[player])


# ----- the env ----------------------------------------------------------------------------------------
class XLandText(ProcgenEnv):
    """One XLand-style text task per episode (see the module docstring)."""

    game = "xland"
    title = "an XLand-style text world"
    idle_action = WAIT

    def __init__(
        self,
        *,
        family: str = "train",
        difficulty: int = 2,
        players: int = 1,
        max_turns: int | None = None,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
    ) -> None:
        if family not in FAMILIES + SPLITS:
            raise EnvError(
                f"xland: unknown family {family!r}; families: {', '.join(FAMILIES)}; or {', '.join(SPLITS)}"
            )
        whole_option("players", players, 1, 4)
        if family in COMPETITIVE and players < 2:
            raise EnvError(f"xland: the {family} family is competitive; give players=2 or more")
        if family == "tug" and players != 2:
            raise EnvError("xland: the tug family is for exactly 2 players")
        super().__init__(num_players=players, retries=retries, max_answer_chars=max_answer_chars)
        self.family_option = family
        self.difficulty = whole_option("difficulty", difficulty, 1, 5)
        self.max_turns_option = None if max_turns is None else whole_option("max_turns", max_turns, 1)
        self.task: Task | None = None
        self.state: State = State(0, (), ())
        self.rounds = 0
        self.max_rounds = 0
        self.winner: int | None = None
        self.last: dict[PlayerId, str] = {}
        self.optimal_rounds: int | None = None
        self.solo_rounds: list[int | None] = []
        self._cache_plans: dict[Any, str] = {}

    def _families(self) -> tuple[str, ...]:
        family, players = self.family_option, len(self.players)
        if family in FAMILIES:
            return (family,)
        pool = {"train": TRAIN_FAMILIES, "test": HELD_OUT_FAMILIES, "any": FAMILIES}[family]
        fits = [f for f in pool if f in COOPERATIVE or (players >= 2 and (f != "tug" or players == 2))]
        return tuple(fits)

    def _team(self) -> tuple[int, ...]:
        """The seats the cooperative solver plans for: every seat up to two (an exact joint search);
        with more players the first two act and the others wait (a feasible plan: an upper bound)."""
        return tuple(range(min(len(self.players), 2)))

    def _setup(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        family = rng.choice(self._families())
        players = len(self.players)
        for _ in range(50):  # a task whose goal already holds, or that nobody can reach, is drawn again
            task = generate(rng, family, self.difficulty, players)
            if any(goal_met(task, task.start, p) for p in range(players)):
                continue
            if task.cooperative:
                plan = search(task, task.start, self._team(), 0)
                if plan is None:
                    continue
                self.optimal_rounds = -(-len(plan) // len(self._team()))
                self.solo_rounds = []
            else:
                solo = [search(task, _turn(task.start, p), (p,), p) for p in range(players)]
                if any(s is None for s in solo):
                    continue
                self.optimal_rounds = None
                self.solo_rounds = [len(s) for s in solo]  # type: ignore[arg-type]
            break
        else:  # pragma: no cover - generation always finds one within a few tries
            raise EnvError(f"xland: could not generate a {family} task at difficulty {self.difficulty}")
        self.task, self.state, self.world = task, task.start, task.start
        self.rounds, self.winner, self.last = 0, None, {}
        self._cache_plans = {}
        needed = self.optimal_rounds if task.cooperative else max(r or 0 for r in self.solo_rounds)
        self.max_rounds = self.max_turns_option or 2 * (needed or 1) + 2

    def _rules(self) -> str:
        task = self.task
        assert task is not None
        rules = "; ".join(
            f"{task.objects[a]} + {task.objects[b]} -> {task.objects[c]}" for a, b, c in task.rules
        )
        mode = (
            "You all share one goal: when it holds, every player wins."
            if task.cooperative
            else "Each player has its own goal: the first whose goal holds wins, the others lose."
        )
        return (
            f"Rooms: {', '.join(task.rooms)} (all connected). Players act in turn, one action each per "
            f"round, for at most {self.max_rounds} rounds. `go ROOM` walks to a room, `pick OBJECT` takes an "
            "object lying in your room (you hold one at most), `drop OBJECT` puts it down, `combine OBJECT` "
            "uses the object you hold on one lying in your room when a rule allows: both are gone and you "
            f"hold the product. Rules: {rules or 'none'}. {mode}"
        )

    def _player_info(self, player: PlayerId) -> str:
        task = self.task
        assert task is not None
        index = self.players.index(player)
        return f"You are {player}, one of {len(self.players)} player(s). Your goal: {goal_text(task, index)}."

    def _acting(self) -> tuple[PlayerId, ...]:
        return (self.players[self.state.turn],)

    def _legal(self, player: PlayerId) -> list[str]:
        assert self.task is not None
        return legal_moves(self.task, self.state, self.players.index(player))

    def _apply(self, actions: dict[PlayerId, str]) -> None:
        task = self.task
        assert task is not None
        ((player, move),) = actions.items()
        index = self.players.index(player)
        self.state = self.world = apply_move(task, self.state, index, move)
        self.last[player] = move
        if self.state.turn == 0:
            self.rounds += 1
        if task.cooperative:
            if goal_met(task, self.state, 0):
                for seat in self.players:
                    self._reward(seat, 1.0)
                self.winner = -1
            return
        order = [index] + [p for p in range(len(self.players)) if p != index]
        for candidate in order:
            if goal_met(task, self.state, candidate):
                self.winner = candidate
                self._reward(self.players[candidate], 1.0)
                return

    def _over(self) -> tuple[bool, bool]:
        if self.winner is not None:
            return True, False
        return False, self.rounds >= self.max_rounds

    def _turn_view(self, player: PlayerId) -> tuple[str, dict[str, Any]]:
        task = self.task
        assert task is not None
        index = self.players.index(player)
        state = self.state
        mine = holding(state, index)
        carried = "the " + task.objects[mine] if mine is not None else "nothing"
        lines = [
            f"Round {self.rounds + 1} of {self.max_rounds}. You are {player}, in the "
            f"{task.rooms[state.rooms[index]]}, holding {carried}.",
            f"Goal{' (team)' if task.cooperative else ''}: {goal_text(task, index)}.",
        ]
        if task.rules:
            lines.append(
                "Rules: "
                + "; ".join(
                    f"{task.objects[a]} + {task.objects[b]} -> {task.objects[c]}" for a, b, c in task.rules
                )
                + "."
            )
        for room in range(len(task.rooms)):
            things = [task.objects[o] for o, loc in enumerate(state.locs) if loc == room]
            people = [
                f"{p}" + (f" (holding the {task.objects[h]})" if (h := holding(state, i)) is not None else "")
                for i, p in enumerate(self.players)
                if state.rooms[i] == room and i != index
            ]
            lines.append(f"{task.rooms[room]}: {', '.join(things + people) or 'empty'}")
        record = {
            "goal": goal_text(task, index),
            "room": task.rooms[state.rooms[index]],
            "holding": task.objects[mine] if mine is not None else None,
            "state": state,
        }
        return "\n".join(lines), record

    def solver_action(self, player: PlayerId) -> str:
        task = self.task
        assert task is not None
        index = self.players.index(player)
        if self.core.done or self.state.turn != index:
            return WAIT
        key = (index, self.state)
        if key in self._cache_plans:
            return self._cache_plans[key]
        movers = self._team() if task.cooperative else (index,)
        if index not in movers:
            return WAIT
        plan = search(task, self.state, movers, 0 if task.cooperative else index)
        move = plan[0] if plan else WAIT
        if task.cooperative and plan:
            # The whole joint plan, so every seat's solver follows it without searching again.
            state = self.state
            for step in plan:
                self._cache_plans[(state.turn, state)] = step
                state = _next_turn(apply_move(task, state, state.turn, step), movers)
        self._cache_plans[key] = move
        return move

    def world_model(self) -> Task | None:
        return self.task

    def true_state(self, player: PlayerId) -> State:
        return self.state

    def _final_info(self) -> dict[str, Any]:
        task = self.task
        assert task is not None
        success = self.winner is not None
        return {
            "procgen": {
                "world": "xland",
                "family": task.family,
                "held_out": task.held_out,
                "difficulty": self.difficulty,
                "players": len(self.players),
                "mode": "cooperative" if task.cooperative else "competitive",
                "success": success,
                "winner": None if self.winner is None or self.winner < 0 else self.players[self.winner],
                "rounds": self.rounds + (1 if self.state.turn else 0),
                "optimal_rounds": self.optimal_rounds,
                "exact": task.cooperative and len(self.players) <= 2,
                "solo_rounds": self.solo_rounds or None,
                "max_turns": self.max_rounds,
            }
        }

    def _render(self) -> str:
        task = self.task
        if task is None:
            return "(no task)"
        where = "; ".join(
            f"{task.objects[o]}: "
            + (task.rooms[loc] if loc >= 0 else ("gone" if loc == ABSENT else f"held by player_{-2 - loc}"))
            for o, loc in enumerate(self.state.locs)
        )
        people = ", ".join(f"{p} in {task.rooms[self.state.rooms[i]]}" for i, p in enumerate(self.players))
        goals = " | ".join(goal_text(task, i) for i in range(len(self.players)))
        return f"{task.family} (difficulty {self.difficulty}): {people}. {where}. Goals: {goals}."


def _turn(state: State, player: int) -> State:
    return State(player, state.rooms, state.locs)


__all__ = [
    "COMPETITIVE",
    "COOPERATIVE",
    "FAMILIES",
    "HELD_OUT_FAMILIES",
    "TRAIN_FAMILIES",
    "State",
    "Task",
    "XLandText",
    "generate",
    "search",
]
