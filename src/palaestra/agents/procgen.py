"""Scripted agents for the procedural worlds (`palaestra.envs.procgen`): the solver, a do-nothing
agent, weak agents whose one missing skill is known, and a knowledge-graph memory wrapper.

They read `view.privileged`, a `ProcgenView` (duck-typed: agents never import envs): `log()` is
what the seat was shown, one structured record per turn; `model` is the world's rules as pure
functions (`step`, `solve`, `is_goal`); `solver_action()` is the gold policy's move.

- `procgen_solver`: the world's solver (exact where the world has one: LUMINA worlds, XLand
  cooperative tasks; the team planner in the crafting and wildfire worlds; Crafter's scripted
  early-game route).
- `procgen_idle`: always the world's do-nothing action (`wait`, `noop`, `look`): the null baseline.
- `weak_planner:blunder=0.5` (LUMINA worlds): remembers everything and tracks the state exactly, but
  each turn, with probability `blunder`, plays a random action instead of the plan. Lacks planning.
- `weak_tracker:slip=0.3`: remembers and plans perfectly from what it believes, but after each of
  its actions, with probability `slip`, forgets to apply it to its belief. Lacks state tracking.
- `weak_memory:window=2`: plans and tracks perfectly from the last `window` turn blocks only (a
  truncated context); with the task or the start out of its window it plays at random. Lacks
  long history.
  Every weak agent follows `ORACLE PLAN` when shown one, and reads `ORACLE STATE` (the tracker
  resets its belief to it; the others use it too); only the history oracle restates the task.
  So each oracle lifts the agent whose skill it takes over (tests/test_procgen_lumina.py).
- `kg_memory:SPEC` (the crafting world, any agent inside): wraps the agent `SPEC` with a
  hierarchical knowledge-graph memory (DAMCS): facts from every turn and message the seat saw
  (goal -> recipes -> resources and where they are -> teammates' needs and stock), rendered into
  the turn block as `MEMORY:` lines for model agents and given to scripted ones as
  `view.privileged.memory()`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from palaestra.agents.base import (
    Agent,
    AgentError,
    AgentFactory,
    AgentView,
    Decision,
    agent_factory,
    decision_rng,
    privileged_label,
    register_agent,
)
from palaestra.core.env import Action
from palaestra.core.messages import Message

WAIT = "wait"


def _procgen(view: AgentView, agent: str) -> Any:
    privileged = view.privileged
    if privileged is None or not callable(getattr(privileged, "log", None)):
        raise AgentError(
            f"the {agent} agent plays the procedural worlds (lumina:, xland, crafter:, craft_together-v0, "
            f"wildfire-v0); {privileged_label(view)} gives it no turn log"
        )
    return privileged


def _idle(view: AgentView) -> str:
    legal = list(view.legal_actions or [])
    for candidate in ("wait", "noop", "look"):
        if candidate in legal:
            return candidate
    return legal[0] if legal else WAIT


class SolverAgent:
    """The world's gold policy, from the true state."""

    async def act(self, view: AgentView) -> Action:
        return str(_procgen(view, "procgen_solver").solver_action())


class IdleAgent:
    """Always the do-nothing action."""

    async def act(self, view: AgentView) -> Action:
        return _idle(view)


def _random_move(view: AgentView, rng: random.Random) -> str:
    moves = [a for a in (view.legal_actions or []) if a != WAIT] or [WAIT]
    return rng.choice(moves)


@dataclass
class _Knowledge:
    """What a weak agent can reconstruct: the task (as a flag: the model holds it), the state."""

    knows_task: bool
    belief: Any


def _replay(model: Any, start: Any, actions: Sequence[str], skip: Sequence[bool] = ()) -> Any:
    state = start
    for index, action in enumerate(actions):
        if index < len(skip) and skip[index]:
            continue
        state, _ = model.step(state, action)
    return state


class WeakAgent:
    """A LUMINA-world agent with one known missing skill (see the module docstring)."""

    name = "weak"

    def __init__(self, *, blunder: float = 0.0, slip: float = 0.0, window: int | None = None) -> None:
        for option, value in (("blunder", blunder), ("slip", slip)):
            if not 0.0 <= value <= 1.0:
                raise AgentError(f"{self.name}: {option} must be in [0, 1], got {value!r}")
        if window is not None and window < 1:
            raise AgentError(f"{self.name}: window must be a whole number >= 1, got {window!r}")
        self.blunder, self.slip, self.window = blunder, slip, window
        self._slips: list[bool] = []
        self._rng: random.Random | None = None

    def _knowledge(self, records: list[dict[str, Any]], model: Any) -> _Knowledge:
        seen = records if self.window is None else records[-self.window :]
        knows_task = any("task" in r or "history" in r for r in seen)
        state_at = max((i for i, r in enumerate(seen) if "state" in r), default=None)
        history_at = max((i for i, r in enumerate(seen) if "history" in r), default=None)
        start_at = max((i for i, r in enumerate(seen) if "initial" in r), default=None)
        if state_at is not None and (history_at is None or state_at >= history_at):
            # What the oracle shows now, then the actions recorded after it (none: it is this turn's).
            after = [r["action"] for r in seen[state_at + 1 :] if "action" in r]
            return _Knowledge(knows_task, _replay(model, seen[state_at]["state"], after))
        if history_at is not None:
            history = seen[history_at]["history"]
            actions = history["actions"]
            return _Knowledge(
                knows_task, _replay(model, history["initial"], actions, self._slips[: len(actions)])
            )
        if start_at is not None:
            actions = [r["action"] for r in seen[start_at + 1 :] if "action" in r]
            first = len(records) - len(seen) + start_at  # the index of the start record in the whole log
            skip = self._slips[first : first + len(actions)]
            return _Knowledge(knows_task, _replay(model, seen[start_at]["initial"], actions, skip))
        return _Knowledge(knows_task, None)

    async def act(self, view: AgentView) -> Action:
        privileged = _procgen(view, self.name)
        records = privileged.log()
        model = privileged.model
        if model is None or not records:
            return _idle(view)
        if self._rng is None:
            self._rng = random.Random(view.seed)
        # One slip draw per action taken, kept for the episode: a forgotten update stays forgotten.
        while len(self._slips) < len(records):
            self._slips.append(self._rng.random() < self.slip)
        latest = records[-1]
        if "plan" in latest:
            return str(latest["plan"])
        rng = decision_rng(view)
        known = self._knowledge(records, model)
        if not known.knows_task or known.belief is None:
            return _random_move(view, rng)
        if self.blunder and rng.random() < self.blunder:
            return _random_move(view, rng)
        plan = model.solve(known.belief)
        return plan[0] if plan else WAIT


# ----- the knowledge-graph memory wrapper ---------------------------------------------------------------
class KnowledgeGraph:
    """A hierarchical knowledge graph (DAMCS): (subject, relation, object) facts on three levels:
    `goal` (what the team must make), `world` (recipes, where resources are and how many are left),
    `team` (what each teammate said it needs, has or plans). A newer fact with the same subject and
    relation replaces the older one (`stone at quarry: 3 left` replaces `... 4 left`)."""

    LEVELS = ("goal", "world", "team")

    def __init__(self) -> None:
        self.facts: dict[tuple[str, str, str], str] = {}
        """(level, subject, relation) -> object."""

    def add(self, level: str, subject: str, relation: str, obj: str) -> None:
        self.facts[(level, subject, relation)] = obj

    def update(self, record: dict[str, Any]) -> None:
        """Facts from one turn record of the crafting world (`craft_together-v0`)."""
        goal = record.get("goal")
        if goal:
            self.add("goal", "team", "must make", str(goal))
        for item, needs in (record.get("recipes") or {}).items():
            self.add(
                "world", str(item), "needs", ", ".join(f"{n} {k}" for k, n in needs.items()) or "nothing"
            )
        for resource, (place, left) in (record.get("resources") or {}).items():
            self.add("world", str(resource), "at", f"{place} ({left} left)")
        for message in record.get("messages") or ():
            sender, kind, item = message.get("from"), message.get("kind"), message.get("item")
            if sender and kind:
                self.add("team", str(sender), str(kind), str(item or ""))
        for mate, where in (record.get("teammates") or {}).items():
            self.add("team", str(mate), "is at", str(where))

    def lines(self, limit: int = 12) -> list[str]:
        """The facts, goal level first, most recent last, at most `limit` lines."""
        ordered = sorted(self.facts.items(), key=lambda item: self.LEVELS.index(item[0][0]))
        shown = [f"{subject} {relation} {obj}" for (_, subject, relation), obj in ordered]
        return shown[-limit:] if len(shown) > limit else shown


class _MemoryView:
    """The inner agent's privileged view: the env's, plus `memory()` (the graph's lines)."""

    def __init__(self, inner: Any, graph: KnowledgeGraph) -> None:
        self._inner = inner
        self._graph = graph

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def memory(self) -> list[str]:
        return self._graph.lines()


class KnowledgeGraphMemory:
    """Wraps any agent with a knowledge-graph memory of the crafting world (see the module docstring)."""

    def __init__(self, inner: Agent, limit: int = 12) -> None:
        self.inner = inner
        self.graph = KnowledgeGraph()
        self.limit = limit
        self._seen = 0

    def _remember(self, view: AgentView) -> None:
        log = getattr(view.privileged, "log", None)
        records = log() if callable(log) else []
        for record in records[self._seen :]:
            self.graph.update(record)
        self._seen = len(records)

    def _with_memory(self, view: AgentView) -> AgentView:
        lines = self.graph.lines(self.limit)
        messages = list(view.messages)
        if lines:
            block = "MEMORY: " + "; ".join(lines)
            for index in range(len(messages) - 1, -1, -1):
                content = messages[index].content or ""
                if "\nLEGAL ACTIONS:" in content:
                    head, tail = content.rsplit("\nLEGAL ACTIONS:", 1)
                    messages[index] = Message(
                        role=messages[index].role,
                        name=messages[index].name,
                        content=f"{head}\n{block}\nLEGAL ACTIONS:{tail}",
                    )
                    break
        privileged = _MemoryView(view.privileged, self.graph) if view.privileged is not None else None
        return replace(view, messages=messages, privileged=privileged)

    async def act(self, view: AgentView) -> Action | Decision:
        self._remember(view)
        return await self.inner.act(self._with_memory(view))

    async def close(self) -> None:
        closer = getattr(self.inner, "close", None)
        if callable(closer):
            await closer()


# ----- registration -------------------------------------------------------------------------------------
@register_agent(
    "procgen_solver", "procedural worlds: the world's solver (exact in lumina: and xland cooperative tasks)"
)
def _solver() -> AgentFactory:
    return SolverAgent


@register_agent("procgen_idle", "procedural worlds: always the do-nothing action (wait, noop, look)")
def _idle_agent() -> AgentFactory:
    return IdleAgent


@register_agent(
    "weak_planner", "lumina: worlds: tracks and remembers, plans badly (weak_planner:blunder=0.5)"
)
def _weak_planner(blunder: float = 0.5) -> AgentFactory:
    WeakAgent(blunder=blunder)  # check the options now, in one line
    return lambda: _named(WeakAgent(blunder=blunder), "weak_planner")


@register_agent(
    "weak_tracker", "lumina: worlds: plans and remembers, slips tracking its state (weak_tracker:slip=0.3)"
)
def _weak_tracker(slip: float = 0.3) -> AgentFactory:
    WeakAgent(slip=slip)
    return lambda: _named(WeakAgent(slip=slip), "weak_tracker")


@register_agent(
    "weak_memory", "lumina: worlds: plans and tracks from its last turns only (weak_memory:window=2)"
)
def _weak_memory(window: int = 2) -> AgentFactory:
    if isinstance(window, bool) or not isinstance(window, int):
        raise AgentError(f"weak_memory: window must be a whole number >= 1, got {window!r}")
    WeakAgent(window=window)
    return lambda: _named(WeakAgent(window=window), "weak_memory")


def _named(agent: WeakAgent, name: str) -> WeakAgent:
    agent.name = name
    return agent


@register_agent(
    "kg_memory", "craft_together-v0: wraps an agent with a knowledge-graph memory (kg_memory:llm:mock)"
)
def _kg_memory(arg: str = "procgen_solver") -> AgentFactory:
    inner = agent_factory(arg or "procgen_solver")
    return lambda: KnowledgeGraphMemory(inner())


__all__ = [
    "IdleAgent",
    "KnowledgeGraph",
    "KnowledgeGraphMemory",
    "SolverAgent",
    "WeakAgent",
]
