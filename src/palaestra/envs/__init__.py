"""palaestra.envs: the worlds. One sub-package per family; importing this registers them all.

The `palaestra` package imports this module, so the built-in ids are registered before anyone can
ask the core registry for them; third-party families register through the `palaestra.envs`
entry-point group instead.
"""

import importlib

from palaestra.envs import adapters as adapters
from palaestra.envs import games as games

_FAMILIES = (
    "palaestra.envs.service",
    "palaestra.envs.social",
    "palaestra.envs.reasoning",
    "palaestra.envs.teams",
    "palaestra.envs.safety",
    "palaestra.envs.workspace",
    "palaestra.envs.web",
    "palaestra.envs.procgen",
)
for _family in _FAMILIES:
    try:
        importlib.import_module(_family)
    except ModuleNotFoundError as _missing:
        if _missing.name != _family:
            raise
