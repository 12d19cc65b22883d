"""The `Agent` protocol, what an agent is shown (`AgentView`) and what it answers (`Decision`),
and the agent registry that turns spec strings (`random`, `minimax`, `mcts:simulations=100`,
`llm:tiny`) into fresh agents.

The runner builds one agent per seat per episode from a factory, so agents may keep
per-episode state (a conversation, a belief) without any reset protocol.
"""

from __future__ import annotations

import importlib
import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from palaestra.core.env import Action, PlayerId
from palaestra.core.messages import Message
from palaestra.core.records import Generation
from palaestra.core.registries import Recipe, Registry, parse_options, split_spec
from palaestra.core.registry import option_problem, unknown_name_error


class AgentError(ValueError):
    """A user-facing error about agent specs; the message is one line."""


@dataclass(frozen=True, slots=True)
class AgentView:
    """What one player is shown when it must act.

    Fields:
        player: the seat id.
        messages: new messages since this player last acted (agents keep their own history).
        legal_actions: the legal action strings, or None for free-form text.
        turn: how many times this player has acted before in this episode.
        step: the env step index.
        episode_id: the episode, so agents can key per-episode state and model sessions on it.
        seed: a seed for this decision, derived from the episode seed, for reproducible agents.
        time: the world clock, when the env has one.
        privileged: what the env lets scripted agents read (its `privileged_view(player)`: a
            game's true state for minimax, MCTS and CFR, a task's scenario for oracles and
            simulated users), or None. Read-only; LLM agents ignore it.
    """

    player: PlayerId
    messages: Sequence[Message]
    legal_actions: Sequence[str] | None
    turn: int
    step: int
    episode_id: str
    seed: int
    time: float | None = None
    privileged: Any = None


@dataclass(frozen=True, slots=True)
class Decision:
    """An action and, for model-backed agents, the generation behind it."""

    action: Action
    generation: Generation | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Agent(Protocol):
    """Anything that acts: `await agent.act(view)` returns an action or a `Decision`."""

    async def act(self, view: AgentView) -> Action | Decision: ...


AgentFactory = Callable[[], Agent]
"""Makes a fresh agent for one seat of one episode."""

AgentBuilder = Callable[..., AgentFactory]
"""Turns a spec's options into an `AgentFactory` (registered with `@register_agent`)."""

_AGENTS: Registry[AgentBuilder] = Registry("agent", error=AgentError, hint="see `palaestra agents`")


def register_agent(name: str, description: str = "") -> Callable[[AgentBuilder], AgentBuilder]:
    """Decorator: register `builder(**params) -> AgentFactory` under `name`.

    Spec strings are `name` or `name:key=value,key=value`; values are parsed as int, float or
    bool when they look like one. A builder may instead take a single `arg` (the whole text after
    the colon) for specs like `llm:hf:/path/to/model`. Registering a name again replaces it.
    """
    return _AGENTS.decorator(name, description, override=True)


def parse_agent_spec(spec: str) -> tuple[str, str]:
    """Split `name:rest` into its name and the rest (empty when there is none)."""
    return split_spec(spec, ":")


@dataclass(frozen=True, eq=False)
class RecordedAgentFactory:
    """An agent factory built from a spec, with the `Recipe` that builds it again.

    Calling it makes a fresh agent, as the factory it wraps does (one call per seat per episode,
    nothing per turn). Compared and hashed by identity, like the functions it wraps.
    """

    factory: AgentFactory
    recipe: Recipe

    def __call__(self) -> Agent:
        return self.factory()


def agent_factory(spec: str) -> AgentFactory:
    """The factory for an agent spec string; raises AgentError with a one-line reason.

    The factory carries the `Recipe` it was built from as `.recipe` (kind `agent`, the name and
    the parsed options), so a run's agents can be rebuilt from its record.
    """
    _load_builtin_agents()
    name, rest = parse_agent_spec(spec)
    if name == "py":
        return RecordedAgentFactory(_python_agent(spec, rest), Recipe("agent", "py", {"arg": rest}))
    if name not in _AGENTS:
        raise unknown_name_error(_AGENTS, name, names=["py"])
    builder = _AGENTS.get(name)
    if not rest:
        params: dict[str, Any] = {}
    elif "arg" in inspect.signature(builder).parameters:
        params = {"arg": rest}
    else:
        params = parse_options(rest, separator=",", where=f"agent spec {spec!r}", error=AgentError)
    try:
        factory, recipe = _AGENTS.build(name, **params)
    except AgentError as exc:
        if not isinstance(exc.__cause__, TypeError):
            raise
        # Name the options the builder does not take, and those it does (`mcts:simulatons=9`).
        raise AgentError(
            f"bad options for agent {name!r}: {option_problem(builder, params, exc.__cause__)}"
        ) from exc
    return RecordedAgentFactory(factory, recipe)


def _python_agent(spec: str, target: str) -> AgentFactory:
    """`py:package.module:Name`: any importable class or zero-argument callable making an agent."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise AgentError(f"agent spec {spec!r}: expected py:package.module:Name")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise AgentError(f"agent spec {spec!r}: cannot import {target} ({exc})") from exc
    if not callable(factory):
        raise AgentError(f"agent spec {spec!r}: {target} is not callable")
    return factory  # type: ignore[no-any-return]


def registered_agents() -> dict[str, str]:
    """Agent names and their one-line descriptions."""
    _load_builtin_agents()
    agents = _AGENTS.descriptions()
    agents["py"] = "py:package.module:Name, any importable agent class or factory"
    return agents


_builtins_loaded = False


def _load_builtin_agents() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in (
        "palaestra.agents.scripted",
        "palaestra.agents.solvers",
        "palaestra.agents.human",
        "palaestra.agents.llm",
        "palaestra.agents.service",
        "palaestra.agents.social",
        "palaestra.agents.teams",
        "palaestra.agents.safety",
        "palaestra.agents.workspace",
        "palaestra.agents.web",
        "palaestra.agents.procgen",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def privileged_label(view: AgentView) -> str:
    """How error messages name the env behind a view: the `env_name` of its privileged view (the
    env's registry id), else the view's type."""
    privileged = view.privileged
    if privileged is None:
        return "an env with no privileged view"
    name = getattr(privileged, "env_name", None)
    return str(name) if name is not None else type(privileged).__name__


def decision_rng(view: AgentView) -> random.Random:
    """A generator seeded by the decision's seed: the same episode seed gives the same choices."""
    return random.Random(view.seed)
