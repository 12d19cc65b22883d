"""palaestra.agents: who acts in an env (scripted players, solvers, people, LLMs)."""

from palaestra.agents.base import (
    Agent,
    AgentError,
    AgentFactory,
    AgentView,
    Decision,
    agent_factory,
    register_agent,
    registered_agents,
)

__all__ = [
    "Agent",
    "AgentError",
    "AgentFactory",
    "AgentView",
    "Decision",
    "agent_factory",
    "register_agent",
    "registered_agents",
]
