"""Reading an agent's action as text or tool calls (the env owns parsing).

An action is a tool-call message when it is
- a `Message` with `tool_calls` (used as is; its text, if any, is ignored), or
- text holding one or more `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks
  (the Hermes/Qwen form; a final block may lack its closing tag), or
- text that is, as a whole, one JSON object `{"name": ..., "arguments": {...}}` or a JSON list of
  them (optionally inside a ```json fence).
`arguments` may also be a JSON string holding the object (as OpenAI-style APIs send it), and
`parameters` is accepted for `arguments`. Anything else is a text message.

A block that is not valid JSON, or not of that shape, or larger than the argument limit, still
becomes a call, with the reason in `ParsedCall.error`: the env answers it with a tool error, so
the caller learns what was wrong and nothing touches the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from palaestra.core.env import Action
from palaestra.core.messages import Message, ToolCall

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ParsedCall:
    """One tool call read from an action; `error` says why it cannot run (None: it can)."""

    call: ToolCall
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedAction:
    """An action as the env reads it: text for the other side, or tool calls (never both)."""

    text: str | None
    calls: tuple[ParsedCall, ...] = ()
    raw_size: int = 0


def parse_action(action: Action, next_id: Callable[[], str], max_argument_chars: int) -> ParsedAction:
    """Split an action into text or tool calls; `next_id()` names calls that come without an id."""
    if isinstance(action, Message):
        if action.tool_calls:
            calls = tuple(
                _checked_message_call(call, next_id, max_argument_chars) for call in action.tool_calls
            )
            return ParsedAction(text=None, calls=calls)
        text = action.content or ""
    elif isinstance(action, str):
        text = action
    else:
        text = str(action)
    if "<tool_call>" in text.lower():
        blocks = _BLOCK.findall(text)
        return ParsedAction(
            text=None, calls=tuple(_parse_block(block, next_id, max_argument_chars) for block in blocks)
        )
    calls = _whole_json_calls(text, next_id, max_argument_chars)
    if calls:
        return ParsedAction(text=None, calls=calls)
    return ParsedAction(text=text)


def _checked_message_call(call: ToolCall, next_id: Callable[[], str], limit: int) -> ParsedCall:
    named = call if call.id else ToolCall(next_id(), call.name, call.arguments, call.raw_arguments)
    if call.raw_arguments is not None:
        return ParsedCall(named, f"{call.name}: the arguments are not valid JSON; send a JSON object")
    size = len(json.dumps(call.arguments, ensure_ascii=False, default=str))
    if size > limit:
        return ParsedCall(named, _too_large(call.name, size, limit))
    return ParsedCall(named)


def _too_large(name: str, size: int, limit: int) -> str:
    return f"{name or 'tool call'}: the arguments are too large ({size} characters; the limit is {limit})"


def _parse_block(block: str, next_id: Callable[[], str], limit: int) -> ParsedCall:
    body = block.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if len(body) > limit + 200:  # a little room for the name and the JSON around the arguments
        return ParsedCall(
            ToolCall(next_id(), _guess_name(body)), _too_large(_guess_name(body), len(body), limit)
        )
    try:
        decoded = json.loads(body)
    except json.JSONDecodeError as exc:
        return ParsedCall(
            ToolCall(next_id(), _guess_name(body), raw_arguments=body[:500]),
            f"the tool call is not valid JSON ({exc.msg} at character {exc.pos}); write "
            '<tool_call>{"name": "TOOL", "arguments": {...}}</tool_call>',
        )
    return _call_from_object(decoded, next_id, limit)


def _call_from_object(decoded: Any, next_id: Callable[[], str], limit: int) -> ParsedCall:
    shape = 'a tool call must be a JSON object {"name": "TOOL", "arguments": {...}}'
    if not isinstance(decoded, dict):
        return ParsedCall(ToolCall(next_id(), ""), shape)
    name = decoded.get("name")
    given_id = decoded.get("id")
    call_id = given_id if isinstance(given_id, str) and given_id else next_id()
    if not isinstance(name, str) or not name:
        return ParsedCall(ToolCall(call_id, ""), f"{shape}; the name is missing")
    extra = set(decoded) - {"name", "arguments", "parameters", "id"}
    if extra:
        return ParsedCall(ToolCall(call_id, name), f"{shape}; unexpected key(s) {', '.join(sorted(extra))}")
    arguments = decoded.get("arguments", decoded.get("parameters", {}))
    if isinstance(arguments, str):
        # OpenAI-style APIs send the arguments as a JSON string.
        if len(arguments) > limit:
            return ParsedCall(ToolCall(call_id, name), _too_large(name, len(arguments), limit))
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return ParsedCall(
                ToolCall(call_id, name, raw_arguments=arguments[:500]),
                f"{name}: the arguments are not valid JSON; send a JSON object",
            )
    if not isinstance(arguments, dict):
        return ParsedCall(ToolCall(call_id, name), f"{name}: the arguments must be a JSON object")
    size = len(json.dumps(arguments, ensure_ascii=False))
    if size > limit:
        return ParsedCall(ToolCall(call_id, name), _too_large(name, size, limit))
    return ParsedCall(ToolCall(call_id, name, arguments))


def _whole_json_calls(text: str, next_id: Callable[[], str], limit: int) -> tuple[ParsedCall, ...]:
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body or body[0] not in "{[" or len(body) > 4 * limit:
        return ()
    try:
        decoded = json.loads(body)
    except ValueError:
        return ()
    items = decoded if isinstance(decoded, list) else [decoded]
    # Only JSON that looks like tool calls is read as such; other JSON is just text.
    if not items or not all(
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and ("arguments" in item or "parameters" in item)
        for item in items
    ):
        return ()
    return tuple(_call_from_object(item, next_id, limit) for item in items)


_NAME = re.compile(r'"name"\s*:\s*"([^"\\]{1,100})"')


def _guess_name(body: str) -> str:
    match = _NAME.search(body[:2000])
    return match.group(1) if match else ""
