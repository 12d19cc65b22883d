"""Messages and tool calls: the unit of text that flows between envs, agents and models.

They are slotted dataclasses rather than pydantic models because an env builds several per step
and the step loop must stay within a few microseconds. They are not `frozen`: a frozen dataclass
costs three to four times as much to build, so immutability is a convention here: never change a
message after it is made (envs share and cache them). `to_dict`/`from_dict` give the JSON form
used in episode records, and pydantic validates them when they sit inside a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset({"system", "user", "assistant", "tool"})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a tool by an agent (or by a simulated user that owns tools).

    Fields:
        id: unique within the episode; the tool's answer quotes it in `Message.tool_call_id`.
        name: the tool's name as the env lists it.
        arguments: the decoded JSON arguments. Raw, undecodable argument text is kept in
            `raw_arguments` instead so the env can answer with an error rather than crash.
        raw_arguments: the argument text exactly as the model wrote it, when it was not valid JSON.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": self.arguments}
        if self.raw_arguments is not None:
            out["raw_arguments"] = self.raw_arguments
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            arguments=dict(data.get("arguments") or {}),
            raw_arguments=data.get("raw_arguments"),
        )


@dataclass(slots=True)
class Message:
    """One message in a conversation.

    Fields:
        role: `system` | `user` | `assistant` | `tool`. Env text an agent reads is `user`
            (or `system` for the rules); what an agent says is `assistant`; tool results are `tool`.
        content: the text. A message holds text or tool calls, never neither.
        name: the speaker (a player id, a tool name, `env`), when more than one could speak.
        tool_calls: calls the speaker makes with this message.
        tool_call_id: for `tool` messages, the id of the call this answers.
        time: world-clock seconds when the message was sent (lets agents and checks reason about
            elapsed time); None when the world has no clock.
        id: an id unique within the episode, when something may refer to this message.
        refs: ids of earlier messages or tool results this one used (provenance for tracing
            failures back along information flow rather than time).
    """

    role: Role
    content: str | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    time: float | None = None
    id: str | None = None
    refs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"message role must be one of {sorted(ROLES)}, got {self.role!r}")
        if self.content is None and not self.tool_calls:
            raise ValueError("a message must hold text or tool calls; this one has neither")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message must name the call it answers in tool_call_id")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; empty optional fields are left out to keep records small."""
        out: dict[str, Any] = {"role": self.role}
        if self.content is not None:
            out["content"] = self.content
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.time is not None:
            out["time"] = self.time
        if self.id is not None:
            out["id"] = self.id
        if self.refs:
            out["refs"] = list(self.refs)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            role=data["role"],
            content=data.get("content"),
            name=data.get("name"),
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            time=data.get("time"),
            id=data.get("id"),
            refs=tuple(data.get("refs") or ()),
        )


def system(content: str, **fields: Any) -> Message:
    """A system message (rules, instructions)."""
    return Message(role="system", content=content, **fields)


def user(content: str, **fields: Any) -> Message:
    """A user message: what the env (or a simulated user) tells an agent."""
    return Message(role="user", content=content, **fields)


def assistant(content: str, **fields: Any) -> Message:
    """An assistant message: what an agent said."""
    return Message(role="assistant", content=content, **fields)
