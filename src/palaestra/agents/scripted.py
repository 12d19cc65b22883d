"""Simple scripted agents: uniformly random legal moves and the first legal move."""

from __future__ import annotations

from palaestra.agents.base import AgentError, AgentFactory, AgentView, decision_rng, register_agent
from palaestra.core.env import Action


class RandomAgent:
    """Plays a uniformly random legal action (seeded by the episode: reruns repeat)."""

    async def act(self, view: AgentView) -> Action:
        if not view.legal_actions:
            raise AgentError(f"random agent needs legal actions; {view.player} was offered none")
        return decision_rng(view).choice(list(view.legal_actions))


class FirstLegalAgent:
    """Plays the first legal action in the env's order (a deterministic baseline)."""

    async def act(self, view: AgentView) -> Action:
        if not view.legal_actions:
            raise AgentError(f"first agent needs legal actions; {view.player} was offered none")
        return view.legal_actions[0]


@register_agent("random", "uniformly random legal action")
def random_agent() -> AgentFactory:
    return RandomAgent


@register_agent("first", "the first legal action")
def first_agent() -> AgentFactory:
    return FirstLegalAgent
