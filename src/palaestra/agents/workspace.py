"""Scripted agents of known behaviour for the workspace worlds (`workspace-v0`, `code-v0`,
`tictoc-v0`): they follow the plans the env's privileged view offers, one step per turn.

- `workspace_gold`: the gold plan (every day's gold calls; the gold patch or answer; a call
  exactly when the world says one is needed): scores 1.0.
- `workspace_stale`: never re-reads what it read on an earlier day, and acts on it (a plan made
  from yesterday's world; never re-calls a tool for a fact it has seen): fails after the first
  outside change.
- `workspace_rereads`: always re-reads: the day's reads again before every write (the file again
  around every edit; a tool call for every question): right, but it costs turns and tokens.
- `workspace_idle`: does nothing (ends every day, finishes at once, answers without looking).

How they treat their turn budget, so that runs under each turn policy differ in known ways:
they do not count turns; told how many are left (a reminder, or an extension granted) and short
of them, they drop their extra re-reads; when extensions are available and their remaining plan
is longer than the turns left, they ask for more (`###MORE_TURNS###`). Under a fixed limit a
long plan simply runs out.

They read the plan through `AgentView.privileged` (duck-typed: `segment`, `plan(mode)`,
`turns_left`, `turns_left_announced`, `can_extend`, `extend_text`), never the env itself.
"""

from __future__ import annotations

from typing import Any

from palaestra.agents.base import AgentError, AgentFactory, AgentView, register_agent
from palaestra.core.env import Action
from palaestra.core.messages import Message, ToolCall

MODES = ("gold", "stale", "rereads", "idle")


def plan_view(view: AgentView, agent: str) -> Any:
    privileged = view.privileged
    if (
        privileged is None
        or not callable(getattr(privileged, "plan", None))
        or not hasattr(privileged, "segment")
    ):
        raise AgentError(f"{agent} plays the workspace worlds only (workspace-v0, code-v0, tictoc-v0)")
    return privileged


class PlanAgent:
    """Follows the view's plan in one mode (see the module docstring).

    Args:
        mode: `gold`, `stale`, `rereads` or `idle`.
    """

    def __init__(self, mode: str = "gold") -> None:
        if mode not in MODES:
            raise AgentError(f"plan mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.segment: Any = None
        self.queue: list[dict[str, Any]] = []
        self.calls = 0

    async def act(self, view: AgentView) -> Action:
        plan = plan_view(view, f"workspace_{self.mode}")
        if plan.segment != self.segment:
            self.segment, self.queue = plan.segment, list(plan.plan(self.mode))
        remaining = len(self.queue)
        told = getattr(plan, "turns_left_announced", None)
        if told is not None and remaining > told:
            self.queue = [step for step in self.queue if step.get("kind") != "refresh"]
        left = getattr(plan, "turns_left", None)
        if getattr(plan, "can_extend", False) and left is not None and len(self.queue) > left:
            return str(plan.extend_text)
        if not self.queue:
            return str(getattr(plan, "done_text", "Done."))
        step = self.queue.pop(0)
        if "call" not in step:
            return str(step["text"])
        self.calls += 1
        call = step["call"]
        return Message(
            role="assistant",
            tool_calls=(ToolCall(f"{self.mode}_{self.calls}", call["name"], dict(call["arguments"])),),
        )


def _builder(mode: str) -> AgentFactory:
    return lambda: PlanAgent(mode)


@register_agent(
    "workspace_gold", "workspace worlds: the gold plan (gold calls, patch, answers; calls when needed)"
)
def workspace_gold() -> AgentFactory:
    return _builder("gold")


@register_agent("workspace_stale", "workspace worlds: acts on what it read earlier, never re-reads")
def workspace_stale() -> AgentFactory:
    return _builder("stale")


@register_agent("workspace_rereads", "workspace worlds: re-reads before every write, re-calls every time")
def workspace_rereads() -> AgentFactory:
    return _builder("rereads")


@register_agent("workspace_idle", "workspace worlds: does nothing (ends each day, empty patch)")
def workspace_idle() -> AgentFactory:
    return _builder("idle")


__all__ = ["MODES", "PlanAgent", "plan_view"]

# The `mcp:AGENT` wrapper lives beside these agents; importing it registers it.
from palaestra.agents import mcp_tools as _mcp_tools  # noqa: E402, F401
