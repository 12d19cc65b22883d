"""palaestra.envs: the worlds. One sub-package per family; importing this registers them all."""

from palaestra.envs import adapters as adapters
from palaestra.envs import games as games
