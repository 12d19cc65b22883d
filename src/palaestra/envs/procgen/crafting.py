"""`craft_together-v0`: a native multi-agent crafting world with shared resources, trades and
structured messages (DAMCS's multi-agent Crafter, as text; docs/references.md).

The team must craft one goal item. The world:

- four places: `camp` (the workbench), `forest` (wood), `quarry` (stone), `mine` (iron). Each
  resource has a shared stock, drawn per seed a little above what the goal needs: wasted units
  (a tool crafted twice, a needless gather) can make the goal impossible;
- `gather` takes one unit of the place's resource: wood needs nothing, stone a `pickaxe`, iron a
  `stone_pickaxe`, held by the gatherer;
- recipes, at camp: `pickaxe` = 2 wood; `stone_pickaxe` = 1 wood + 2 stone; `iron_pickaxe` =
  1 wood + 1 stone + 2 iron. The goal (`difficulty` 1, 2, 3) is `pickaxe`, `stone_pickaxe` or
  `iron_pickaxe`; the tools below it are needed on the way;
- trades: `give PLAYER ITEM` hands one unit to a teammate at the same place;
- structured messages (DAMCS's protocol): `say need ITEM`, `say have ITEM`, `say going PLACE`
  reach every teammate in their next turn block, as `player_1: need stone`.

Everyone acts at once each round (simultaneous moves). An agent sees its own place (the stock
there, who else is there), its inventory, the recipes, the goal and its teammates' messages; it
does not see the other places' stocks or what teammates hold unless told. The episode ends when
any agent holds the goal item (every agent gets 1) or after `max_turns` rounds (default: twice the
rounds a lone solver needs, plus two).

The solver is a centralized team planner from the true state (an upper bound, not an optimum):
`player_0` crafts and gathers what needs tools, every other agent gathers wood, walks it to camp
and gives it to `player_0`. `info["procgen"]` reports success, rounds, the lone solver's rounds
(`solo_rounds`) and the team speed-up `measure = solo_rounds / rounds` (DAMCS reports two agents
reaching the goal in 63% fewer steps than one).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from palaestra.core.env import PlayerId
from palaestra.envs.procgen.base import MAX_ANSWER_CHARS, ProcgenEnv, whole_option

PLACES = ("camp", "forest", "quarry", "mine")
RESOURCE_AT = {"forest": "wood", "quarry": "stone", "mine": "iron"}
NEEDS_TOOL = {"wood": None, "stone": "pickaxe", "iron": "stone_pickaxe"}
RECIPES: dict[str, dict[str, int]] = {
    "pickaxe": {"wood": 2},
    "stone_pickaxe": {"wood": 1, "stone": 2},
    "iron_pickaxe": {"wood": 1, "stone": 1, "iron": 2},
}
TIERS = ("pickaxe", "stone_pickaxe", "iron_pickaxe")
ITEMS = ("wood", "stone", "iron", *TIERS)
KINDS = ("need", "have", "going")
WAIT = "wait"


def requirements(goal: str) -> dict[str, int]:
    """The raw units the tools up to `goal` take in all."""
    total: dict[str, int] = {}
    for tier in TIERS[: TIERS.index(goal) + 1]:
        for item, amount in RECIPES[tier].items():
            total[item] = total.get(item, 0) + amount
    return total


@dataclass(frozen=True)
class Team:
    """The world state: where each agent is, what each holds, the stocks left."""

    places: tuple[str, ...]
    bags: tuple[tuple[tuple[str, int], ...], ...]
    stock: tuple[tuple[str, int], ...]

    def bag(self, index: int) -> dict[str, int]:
        return dict(self.bags[index])

    def left(self, resource: str) -> int:
        return dict(self.stock)[resource]


def _bag(items: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, v) for k, v in items.items() if v))


@dataclass
class CraftState:
    team: Team
    goal: str
    rounds: int = 0
    inbox: dict[int, list[dict[str, str]]] = field(default_factory=dict)
    done: bool = False


class CraftTogether(ProcgenEnv):
    """The multi-agent crafting world (see the module docstring). Options: `players` (1-6),
    `difficulty` (1-3: the goal's tier), `spare` (extra units per resource beyond the need, drawn
    from 0 to it; default 2), `max_turns`, `retries`."""

    game = "craft_together"
    title = "a cooperative crafting world"
    idle_action = WAIT

    def __init__(
        self,
        *,
        players: int = 2,
        difficulty: int = 3,
        spare: int = 2,
        max_turns: int | None = None,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
    ) -> None:
        super().__init__(
            num_players=whole_option("players", players, 1, 6),
            retries=retries,
            max_answer_chars=max_answer_chars,
        )
        self.difficulty = whole_option("difficulty", difficulty, 1, 3)
        self.spare = whole_option("spare", spare, 0, 10)
        self.max_turns_option = None if max_turns is None else whole_option("max_turns", max_turns, 1)
        self.state = CraftState(Team((), (), ()), TIERS[self.difficulty - 1])
        self.max_rounds = 0
        self.solo_rounds = 0
        self.last: dict[int, str] = {}

    # ----- rules -----------------------------------------------------------------------------------------
    def _setup(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        goal = TIERS[self.difficulty - 1]
        need = requirements(goal)
        stock = tuple((r, need.get(r, 0) + rng.randint(0, self.spare)) for r in ("wood", "stone", "iron"))
        n = len(self.players)
        places = tuple(rng.choice(PLACES) for _ in range(n))
        team = Team(places, tuple(() for _ in range(n)), stock)
        self.state = CraftState(team, goal, inbox={i: [] for i in range(n)})
        self.world = self.state
        self.last = {}
        self.solo_rounds = _rounds_alone(replace(team, places=team.places[:1], bags=team.bags[:1]), goal)
        self.max_rounds = self.max_turns_option or 2 * self.solo_rounds + 2

    def _rules(self) -> str:
        recipes = "; ".join(
            f"{item} = " + " + ".join(f"{n} {k}" for k, n in uses.items()) for item, uses in RECIPES.items()
        )
        return (
            f"{len(self.players)} agent(s) craft together; the team wins when anyone holds the "
            f"{self.state.goal}. Places: camp (workbench), forest (wood), quarry (stone), mine (iron); "
            "`go PLACE` takes a round. `gather` takes one unit where you are from a shared stock that runs "
            "out (stone needs a pickaxe, iron a stone_pickaxe, in your bag). At camp, `craft ITEM`: "
            f"{recipes}. `give PLAYER ITEM` hands one unit to a teammate at your place. `say need ITEM`, "
            "`say have ITEM`, `say going PLACE` reach every teammate next round. Everyone acts at once; "
            f"at most {self.max_rounds} rounds."
        )

    def _player_info(self, player: PlayerId) -> str:
        return f"You are {player}, one of {len(self.players)} agent(s)."

    def _legal(self, player: PlayerId) -> list[str]:
        index = self.players.index(player)
        team = self.state.team
        here, bag = team.places[index], team.bag(index)
        moves = [f"go {p}" for p in PLACES if p != here]
        resource = RESOURCE_AT.get(here)
        if resource is not None and team.left(resource) > 0:
            tool = NEEDS_TOOL[resource]
            if tool is None or bag.get(tool, 0) > 0:
                moves.append("gather")
        if here == "camp":
            moves += [
                f"craft {item}"
                for item, uses in RECIPES.items()
                if all(bag.get(k, 0) >= n for k, n in uses.items())
            ]
        for other, place in enumerate(team.places):
            if other != index and place == here:
                moves += [f"give {self.players[other]} {item}" for item in ITEMS if bag.get(item, 0) > 0]
        moves += [f"say need {item}" for item in ITEMS] + [
            f"say have {item}" for item in ITEMS if bag.get(item, 0)
        ]
        moves += [f"say going {p}" for p in PLACES]
        moves.append(WAIT)
        return moves

    def _apply(self, actions: dict[PlayerId, str]) -> None:
        state = self.state
        places = list(state.team.places)
        bags = [state.team.bag(i) for i in range(len(places))]
        stock = dict(state.team.stock)
        outbox: dict[int, list[dict[str, str]]] = {i: [] for i in range(len(places))}
        gives: list[tuple[int, int, str]] = []
        for player, action in actions.items():
            index = self.players.index(player)
            self.last[index] = action
            verb, _, rest = action.partition(" ")
            if verb == "go":
                places[index] = rest
            elif verb == "gather":
                resource = RESOURCE_AT[places[index]]
                if stock[resource] > 0:  # two gatherers of the last unit: the first in seat order wins
                    stock[resource] -= 1
                    bags[index][resource] = bags[index].get(resource, 0) + 1
            elif verb == "craft":
                uses = RECIPES[rest]
                if all(bags[index].get(k, 0) >= n for k, n in uses.items()):
                    for k, n in uses.items():
                        bags[index][k] -= n
                    bags[index][rest] = bags[index].get(rest, 0) + 1
            elif verb == "give":
                target, item = rest.split(" ", 1)
                gives.append((index, self.players.index(target), item))
            elif verb == "say":
                kind, item = rest.split(" ", 1)
                for other, box in outbox.items():
                    if other != index:
                        box.append({"from": player, "kind": kind, "item": item})
        for giver, taker, item in gives:  # after the moves: both must still be at the same place
            if (
                bags[giver].get(item, 0) > 0
                and places[giver] == places[taker]
                and state.team.places[giver] == state.team.places[taker]
            ):
                bags[giver][item] -= 1
                bags[taker][item] = bags[taker].get(item, 0) + 1
        state.team = Team(
            tuple(places),
            tuple(_bag(b) for b in bags),
            tuple((r, stock[r]) for r in ("wood", "stone", "iron")),
        )
        state.inbox = outbox
        state.rounds += 1
        if any(b.get(state.goal, 0) for b in bags):
            state.done = True
            for player in self.players:
                self._reward(player, 1.0)

    def _over(self) -> tuple[bool, bool]:
        return (True, False) if self.state.done else (False, self.state.rounds >= self.max_rounds)

    def _turn_view(self, player: PlayerId) -> tuple[str, dict[str, Any]]:
        index = self.players.index(player)
        state = self.state
        here, bag = state.team.places[index], state.team.bag(index)
        mates = [self.players[i] for i, p in enumerate(state.team.places) if p == here and i != index]
        resource = RESOURCE_AT.get(here)
        lines = [
            f"Round {state.rounds + 1} of {self.max_rounds}. Team goal: hold a {state.goal}.",
            f"You are at the {here}" + (f" with {', '.join(mates)}" if mates else "") + ".",
        ]
        if resource is not None:
            lines.append(f"The {here} has {state.team.left(resource)} {resource} left.")
        lines.append("Your bag: " + (", ".join(f"{n} {k}" for k, n in sorted(bag.items())) or "empty") + ".")
        if index in self.last:
            lines.append(f"Your last action: {self.last[index]}.")
        messages = state.inbox.get(index, [])
        if messages:
            lines.append(
                "Messages: " + "; ".join(f"{m['from']}: {m['kind']} {m['item']}" for m in messages) + "."
            )
        record: dict[str, Any] = {
            "goal": state.goal,
            "place": here,
            "bag": bag,
            "teammates": {m: here for m in mates},
            "messages": list(messages),
            "recipes": RECIPES if state.rounds == 0 else {},
        }
        if resource is not None:
            record["resources"] = {resource: (here, state.team.left(resource))}
        return "\n".join(lines), record

    def _final_info(self) -> dict[str, Any]:
        state = self.state
        rounds = state.rounds
        return {
            "procgen": {
                "world": "craft_together",
                "goal": state.goal,
                "players": len(self.players),
                "success": state.done,
                "rounds": rounds,
                "solo_rounds": self.solo_rounds,
                "measure": round(self.solo_rounds / rounds, 4) if state.done and rounds else 0.0,
            }
        }

    def _render(self) -> str:
        team = self.state.team
        who = "; ".join(
            f"{p} at {team.places[i]} holding {dict(team.bags[i]) or 'nothing'}"
            for i, p in enumerate(self.players)
        )
        return f"goal {self.state.goal}; stocks {dict(team.stock)}; {who}"

    def solver_action(self, player: PlayerId) -> str:
        if self.state.done or self.core.done:
            return WAIT
        return team_plan(self.state.team, self.state.goal)[self.players.index(player)]

    def world_model(self) -> Any:
        return {"recipes": RECIPES, "needs_tool": NEEDS_TOOL, "resource_at": RESOURCE_AT}


# ----- the team planner -----------------------------------------------------------------------------------
def _next_tier(bag: Mapping[str, int], goal: str) -> str:
    """The lowest tool up to `goal` the crafter lacks (the goal itself when it has them all)."""
    for tier in TIERS[: TIERS.index(goal) + 1]:
        if bag.get(tier, 0) < 1:
            return tier
    return goal


def _still_needed(bag: Mapping[str, int], goal: str) -> dict[str, int]:
    """Raw units the crafter still lacks for every tool from its next one up to the goal."""
    need: dict[str, int] = {}
    for tier in TIERS[TIERS.index(_next_tier(bag, goal)) : TIERS.index(goal) + 1]:
        for item, amount in RECIPES[tier].items():
            need[item] = need.get(item, 0) + amount
    return {item: max(0, amount - bag.get(item, 0)) for item, amount in need.items()}


def team_plan(team: Team, goal: str) -> list[str]:
    """Each agent's next action (see the module docstring). The crafter (`player_0`) crafts its next
    tool at camp when it can; else it gathers the stone or iron that tool needs (it holds the tools
    that gathering takes), or waits at camp for wood (it fetches wood too while the helpers carry less
    than its next tool takes). Helpers gather the wood still unaccounted for (the remaining tools'
    need, less what the crafter and the helpers hold), one unit per helper per round, and walk it
    to camp."""
    crafter = team.bag(0)
    tier = _next_tier(crafter, goal)
    helpers = range(1, len(team.places))
    unassigned = _still_needed(crafter, goal).get("wood", 0) - sum(
        team.bag(i).get("wood", 0) for i in helpers
    )
    now = {k: n - crafter.get(k, 0) for k, n in RECIPES[tier].items() if crafter.get(k, 0) < n}
    if not now:
        plan = [f"craft {tier}" if team.places[0] == "camp" else "go camp"]
    elif "stone" in now or "iron" in now:
        plan = [_fetch(team, 0, "stone" if "stone" in now else "iron")]
    elif not helpers or now["wood"] > sum(team.bag(i).get("wood", 0) for i in helpers):
        plan = [_fetch(team, 0, "wood")]  # more wood than the helpers carry: fetch some too
        unassigned -= plan[0] == "gather"
    else:
        plan = [_go(team, 0, "camp")]
    for index in helpers:
        bag = team.bag(index)
        if bag.get("wood", 0) > 0 and (team.places[index] != "forest" or unassigned <= 0):
            at_camp = team.places[index] == team.places[0] == "camp"
            plan.append("give player_0 wood" if at_camp else _go(team, index, "camp"))
        elif unassigned > 0 and team.left("wood") > 0:
            plan.append(_fetch(team, index, "wood"))
            unassigned -= 1
        else:
            plan.append(WAIT)
    return plan


def _go(team: Team, index: int, place: str) -> str:
    return WAIT if team.places[index] == place else f"go {place}"


def _fetch(team: Team, index: int, resource: str) -> str:
    place = next(p for p, r in RESOURCE_AT.items() if r == resource)
    return "gather" if team.places[index] == place else f"go {place}"


def _rounds_alone(team: Team, goal: str, limit: int = 200) -> int:
    """The rounds the team planner needs with one agent (the lone solver), by simulation."""
    rounds = 0
    while rounds < limit and not team.bag(0).get(goal):
        action = team_plan(team, goal)[0]
        team = _step_alone(team, action)
        rounds += 1
    return rounds


def _step_alone(team: Team, action: str) -> Team:
    place, bag, stock = team.places[0], team.bag(0), dict(team.stock)
    verb, _, rest = action.partition(" ")
    if verb == "go":
        place = rest
    elif verb == "gather":
        resource = RESOURCE_AT[place]
        stock[resource] -= 1
        bag[resource] = bag.get(resource, 0) + 1
    elif verb == "craft":
        for k, n in RECIPES[rest].items():
            bag[k] -= n
        bag[rest] = bag.get(rest, 0) + 1
    return Team((place,), (_bag(bag),), tuple((r, stock[r]) for r in ("wood", "stone", "iron")))


__all__ = ["RECIPES", "CraftTogether", "requirements", "team_plan"]
