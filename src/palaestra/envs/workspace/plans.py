"""Playing an episode of a workspace world by its privileged view's plan, without an agent loop:
what `palaestra validate workspace` and the tests use (the agents in `palaestra.agents.workspace`
play the same plans through the runner)."""

from __future__ import annotations

from typing import Any

from palaestra.core.env import Action, TimeStep
from palaestra.core.messages import Message, ToolCall


def plan_action(step: dict[str, Any], number: int) -> Action:
    """A plan step as an action: a tool-call message, or its text."""
    if "call" in step:
        call = step["call"]
        return Message(
            role="assistant", tool_calls=(ToolCall(f"plan_{number}", call["name"], dict(call["arguments"])),)
        )
    return str(step["text"])


def play_plan(env: Any, options: dict[str, Any], mode: str, *, max_steps: int = 2_000) -> TimeStep:
    """Play one episode by the privileged view's plan in `mode`, one step per turn, re-planning at
    every new segment (a day, a question). Returns the last step."""
    step = env.reset(options=options)
    view = env.privileged_view("agent")
    segment: Any = None
    queue: list[dict[str, Any]] = []
    for number in range(max_steps):
        if step.done:
            return step
        if view.segment != segment:
            segment, queue = view.segment, list(view.plan(mode))
        action = plan_action(queue.pop(0), number) if queue else "I am done."
        step = env.step({"agent": action})
    raise RuntimeError(f"plan {mode} did not finish in {max_steps} steps")


__all__ = ["plan_action", "play_plan"]
