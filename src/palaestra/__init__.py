"""palaestra: the training ground for multi-turn, multi-agent LLM agents.

Build interactive worlds (`palaestra.envs`), run agents in them at scale (`palaestra.rollout`),
score them, and train them. The small contracts live in `palaestra.core`.
"""

from palaestra.core import Episode, Message, TimeStep, check_env, make, register

__version__ = "0.1.0"

__all__ = ["Episode", "Message", "TimeStep", "__version__", "check_env", "make", "register"]
