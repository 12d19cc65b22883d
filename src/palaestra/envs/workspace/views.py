"""What the privileged views of the workspace envs share (`workspace-v0`, `code-v0`, `tictoc-v0`).

A view is live: every property reads the env's current episode, so scripted agents see turn counts
and the task as they are now. Each env's view adds its `world`, `segment`, `agent_tools`,
`done_text` and `plan(mode)`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from palaestra.envs.workspace.turns import EXTEND_MARKER


def mcp_server_command(folder: Path) -> dict[str, Any]:
    """How to start an MCP server on a sandbox folder (for MCP clients: `palaestra.agents.mcp_tools`)."""
    return {
        "command": sys.executable,
        "args": ["-m", "palaestra.envs.workspace.mcp_server", "--sandbox", str(folder)],
    }


class EpisodeView:
    """The turn counts and task id of the env's current episode.

    The env gives `spec` and `_current()`, an episode with `task.id` and a `TurnBudget` `budget`.
    """

    extend_text = EXTEND_MARKER

    def __init__(self, env: Any) -> None:
        self._env = env
        self.env_name = str(env.spec.id) if env.spec is not None else type(env).__name__

    @property
    def turns_left_announced(self) -> int | None:
        return self._env._current().budget.announced_left

    @property
    def turns_left(self) -> int:
        """The turns left in this segment, as an agent counting from the stated limit knows them."""
        return self._env._current().budget.left

    @property
    def can_extend(self) -> bool:
        return self._env._current().budget.can_extend

    @property
    def task_id(self) -> str:
        return self._env._current().task.id


class SandboxView(EpisodeView):
    """An `EpisodeView` of an env whose episode lives in a sandbox folder (`env.sandbox`)."""

    @property
    def mcp_server(self) -> dict[str, Any]:
        return mcp_server_command(self._env.sandbox.folder)


__all__ = ["EpisodeView", "SandboxView", "mcp_server_command"]
