"""palaestra.envs: the worlds. One sub-package per family; importing this registers them all."""

from palaestra.envs import adapters as adapters  # noqa: F401  (openspiel:, textarena:, Hanabi)
from palaestra.envs import games as games  # noqa: F401  (native games)
