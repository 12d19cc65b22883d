"""What the workspace envs share: one `agent` seat that answers with text or tool calls.

An action is read as the service envs read it (`palaestra.envs.service.parsing`): a `Message`
with `tool_calls`, `<tool_call>{...}</tool_call>` blocks, or a JSON call; anything else is
text. Tool calls run at once and each result comes back to the agent (a role-`tool` message
answering the call's id, or a `<tool_response>` text when the call was written as text); text
is the agent speaking, which each env reads its own way (ending a day, answering a question).
An empty or overlong text is an invalid action (the agent is asked again); a malformed, unknown
or mistyped call is answered with a tool error and changes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.env import Action, InvalidAction, PlayerId
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError
from palaestra.envs.service.domain import compact_tool_line, example_call
from palaestra.envs.service.parsing import ParsedCall, parse_action
from palaestra.envs.service.toolkit import ToolSpec
from palaestra.envs.workspace.sandbox import CallResult

AGENT: PlayerId = "agent"
DONE_MARKER = "###DONE###"
PROMPT_STYLES = ("compact", "full")
_MAX_ECHO = 500
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")

CALL_HELP = (
    "To use a tool, reply with only the call (one or more), in this form:\n"
    '<tool_call>{"name": "TOOL_NAME", "arguments": {"ARGUMENT": "VALUE"}}</tool_call>\n'
    "Each result comes back to you before you continue. A message is either text or tool calls."
)


def tools_prompt(specs: Sequence[ToolSpec], style: str) -> str:
    """The tool list an agent reads: a line per tool and an example call (`compact`), or each
    tool's JSON schema (`full`), then how to call them."""
    if style == "full":
        listed = "\n".join(json.dumps(spec.json_schema()) for spec in specs)
        return f"Tools:\n{listed}\n\n{CALL_HELP}"
    lines = "\n".join(compact_tool_line(spec) for spec in specs)
    return f"Tools:\n{lines}\n\n{CALL_HELP}\nFor example: {example_call(list(specs))}"


def check_limits(**limits: int) -> None:
    for label, value in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise EnvError(f"{label} must be a positive integer, got {value!r}")


@dataclass(slots=True)
class Handled:
    """What one agent action amounted to: tool results to show, or text, or a refusal."""

    messages: list[Message] = field(default_factory=list)
    text: str | None = None
    invalid: InvalidAction | None = None
    calls: list[tuple[str, dict[str, Any], CallResult]] = field(default_factory=list)


class ToolSeat:
    """Reads one seat's actions and runs their tool calls through `execute` (see module docstring).

    Args:
        execute: runs one call `(name, arguments) -> CallResult` on the episode's world.
        clock: the world clock now (stamped on the messages).
        max_calls_per_message: calls run from one message; the rest get an error.
        max_message_chars: longest text accepted.
        max_argument_chars: largest JSON arguments of one call.
    """

    def __init__(
        self,
        execute: Callable[[str, Any], CallResult],
        clock: Callable[[], float],
        *,
        max_calls_per_message: int = 8,
        max_message_chars: int = 10_000,
        max_argument_chars: int = 4_000,
    ) -> None:
        check_limits(
            max_calls_per_message=max_calls_per_message,
            max_message_chars=max_message_chars,
            max_argument_chars=max_argument_chars,
        )
        self.execute = execute
        self.clock = clock
        self.max_calls_per_message = max_calls_per_message
        self.max_message_chars = max_message_chars
        self.max_argument_chars = max_argument_chars
        self.call_counter = 0

    def _next_id(self) -> str:
        self.call_counter += 1
        return f"call_{self.call_counter}"

    def handle(self, player: PlayerId, action: Action) -> Handled:
        parsed = parse_action(action, self._next_id, self.max_argument_chars)
        if parsed.calls:
            as_text = not (isinstance(action, Message) and action.tool_calls)
            return self._run_calls(parsed.calls, as_text)
        text = parsed.text or ""
        problem = None
        if not text.strip():
            problem = "the message is empty; write text or a tool call"
        elif len(text) > self.max_message_chars:
            problem = (
                f"the message is too long ({len(text)} characters; the limit is {self.max_message_chars})"
            )
        if problem is not None:
            refusal = InvalidAction(player=player, action=text[:_MAX_ECHO], reason=problem, outcome="retry")
            note = Message(role="user", content=f"(not sent: {problem})", name="env", time=self.clock())
            return Handled(messages=[note], invalid=refusal)
        return Handled(text=text)

    def _run_calls(self, calls: Sequence[ParsedCall], as_text: bool) -> Handled:
        handled = Handled()
        for index, parsed in enumerate(calls):
            call = parsed.call
            if parsed.error is not None:
                result = CallResult(f"Error: {parsed.error}", False)
            elif index >= self.max_calls_per_message:
                result = CallResult(
                    f"Error: not run: at most {self.max_calls_per_message} tool calls per message", False
                )
            else:
                result = self.execute(call.name, call.arguments)
                handled.calls.append((call.name, dict(call.arguments), result))
            name = call.name if _TOOL_NAME.match(call.name) else "tool"
            now = self.clock()
            if as_text:
                # Written as text, the call has no id in the caller's context: answer in text too.
                content = f'<tool_response name="{name}">\n{result.text}\n</tool_response>'
                handled.messages.append(Message(role="user", content=content, name="tool", time=now))
            else:
                handled.messages.append(
                    Message(role="tool", content=result.text, name=name, tool_call_id=call.id, time=now)
                )
        return handled


def parse_choice(value: Any, choices: Sequence[str], label: str) -> str:
    if value not in choices:
        raise EnvError(f"{label} must be {' or '.join(choices)}, got {value!r}")
    return str(value)


def has_marker(text: str, marker: str) -> bool:
    return marker in text


def json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    """A copy that survives JSON (for `info`)."""
    return json.loads(json.dumps(dict(value), default=str))


__all__ = [
    "AGENT",
    "CALL_HELP",
    "DONE_MARKER",
    "PROMPT_STYLES",
    "Handled",
    "ToolSeat",
    "check_limits",
    "json_safe",
    "parse_choice",
    "tools_prompt",
]
