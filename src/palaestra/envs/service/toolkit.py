"""Typed tools for service domains: the `@tool` decorator, JSON schemas derived from type hints and
docstrings, strict argument checking, and execution inside a savepoint.

A domain's `tools.py` holds plain Python functions:

    @tool(write=True)
    def cancel_pending_order(ctx: ToolContext, order_id: str, reason: Literal["no longer needed"]) -> dict:
        '''Cancel an order that has not been shipped yet.

        Args:
            order_id: The order id, such as '#W0001'.
            reason: Why the customer cancels.
        '''

The first parameter is always the `ToolContext` (database connection, world clock, caller). The
other parameters become the tool's JSON schema: `str`, `int`, `float`, `bool`, `list[T]`,
`Literal[...]` and `T | None = None` are understood; descriptions come from the docstring's
`Args:` section. Tools read and write with parameterized SQL only (`?` placeholders), and raise
`ToolError` to refuse a request: the message goes back to the caller as the tool's answer.

Arguments are checked before the function runs (unknown or missing names, wrong JSON types,
oversized values), so a malformed call never reaches the database; a tool that fails half-way is
rolled back to the savepoint taken before it started.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import operator
import re
import sqlite3
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args, get_origin, overload

ToolOwner = Literal["agent", "user"]
MAX_STRING_CHARS = 1_000
"""Longest string argument a tool accepts (ids, names, addresses are far shorter)."""
MAX_LIST_ITEMS = 100
"""Longest list argument a tool accepts."""
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_SECTION_HEADER = re.compile(r"^\s*(Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^(\s*)(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolError(Exception):
    """A tool refusing a request (not found, not allowed by the rules, bad value).

    The message is shown to whoever called the tool, so write it for them: say what was wrong
    and, where it helps, what to do instead.
    """


class ToolArgumentError(ToolError):
    """The call's arguments do not fit the tool's schema; raised before the tool runs."""


@dataclass(slots=True)
class ToolContext:
    """What a tool works with.

    Fields:
        db: the episode's SQLite connection (rows come back as `sqlite3.Row`).
        now: the world clock, Unix seconds (UTC).
        caller: `agent` or `user`: who made the call.
    """

    db: sqlite3.Connection
    now: float
    caller: str = "agent"

    @property
    def now_datetime(self) -> datetime:
        """The world clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now, tz=UTC)

    @property
    def today(self) -> str:
        """The world clock's date, `YYYY-MM-DD`."""
        return self.now_datetime.strftime("%Y-%m-%d")

    def one(self, sql: str, parameters: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        """The first row of a parameterized query as a dict, or None."""
        row = self.db.execute(sql, parameters).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Every row of a parameterized query, as dicts."""
        return [dict(row) for row in self.db.execute(sql, parameters).fetchall()]


@dataclass(frozen=True, slots=True)
class Parameter:
    """One argument of a tool.

    Fields:
        name: the argument name.
        schema: its JSON schema (`{"type": "string"}`, an `enum`, an array of items, ...).
        required: False when the function gives it a default.
        default: the default value (when not required).
        description: from the docstring's `Args:` section.
    """

    name: str
    schema: dict[str, Any]
    required: bool = True
    default: Any = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the env sees it.

    Fields:
        name: the function name (what callers write).
        function: the Python function; called as `function(ctx, **arguments)`.
        description: the docstring's first paragraph.
        parameters: the arguments, in signature order.
        write: True when the tool changes the database (graded by replay); False for reads.
        owner: `agent` (the service agent's tool) or `user` (the customer's own tool, e.g. reading
            their inbox); calls by the other side are refused.
    """

    name: str
    function: Callable[..., Any]
    description: str
    parameters: tuple[Parameter, ...]
    write: bool = False
    owner: ToolOwner = "agent"
    _by_name: dict[str, Parameter] = field(default_factory=dict, compare=False, repr=False)

    def json_schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema: name, description, parameters (JSON schema)."""
        properties: dict[str, Any] = {}
        for parameter in self.parameters:
            entry = dict(parameter.schema)
            if parameter.description:
                entry["description"] = parameter.description
            properties[parameter.name] = entry
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": [p.name for p in self.parameters if p.required],
                    "additionalProperties": False,
                },
            },
        }

    def check_arguments(self, arguments: Any) -> dict[str, Any]:
        """The arguments, checked against the schema and completed with defaults.

        Raises ToolArgumentError with a message the caller can act on.
        """
        if not isinstance(arguments, Mapping):
            raise ToolArgumentError(
                f"{self.name}: arguments must be a JSON object, got {_json_kind(arguments)}"
            )
        by_name = self._by_name
        unknown = [key for key in arguments if key not in by_name]
        if unknown:
            expected = ", ".join(by_name) or "no arguments"
            raise ToolArgumentError(
                f"{self.name}: unknown argument(s) {', '.join(map(repr, unknown))}; expected: {expected}"
            )
        checked: dict[str, Any] = {}
        for parameter in self.parameters:
            if parameter.name in arguments:
                checked[parameter.name] = _check_value(
                    arguments[parameter.name], parameter.schema, f"{self.name}: {parameter.name}"
                )
            elif parameter.required:
                raise ToolArgumentError(f"{self.name}: missing required argument {parameter.name!r}")
            else:
                checked[parameter.name] = parameter.default
        return checked


ToolFunction = TypeVar("ToolFunction", bound=Callable[..., Any])


@overload
def tool(function: ToolFunction, /) -> ToolFunction: ...


@overload
def tool(*, write: bool = False, owner: ToolOwner = "agent") -> Callable[[ToolFunction], ToolFunction]: ...


def tool(
    function: ToolFunction | None = None,
    /,
    *,
    write: bool = False,
    owner: ToolOwner = "agent",
) -> ToolFunction | Callable[[ToolFunction], ToolFunction]:
    """Mark a function as a domain tool (`@tool`, `@tool(write=True)`, `@tool(owner="user")`).

    The schema is built right away, so an unsupported type hint fails when the domain loads.
    """
    if owner not in ("agent", "user"):
        raise ValueError(f"tool owner must be 'agent' or 'user', got {owner!r}")

    def mark(fn: ToolFunction) -> ToolFunction:
        fn.__palaestra_tool__ = build_spec(fn, write=write, owner=owner)  # type: ignore[attr-defined]
        return fn

    return mark(function) if function is not None else mark


def tool_spec(function: Any) -> ToolSpec | None:
    """The spec `@tool` attached to `function`, or None for plain functions."""
    spec = getattr(function, "__palaestra_tool__", None)
    return spec if isinstance(spec, ToolSpec) else None


def build_spec(function: Callable[..., Any], *, write: bool = False, owner: ToolOwner = "agent") -> ToolSpec:
    """The `ToolSpec` of a function: schema from its type hints, descriptions from its docstring."""
    name = function.__name__
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function)
    names = list(signature.parameters)
    if not names or names[0] != "ctx":
        raise ValueError(f"tool {name}: the first parameter must be `ctx: ToolContext`")
    summary, argument_docs = parse_docstring(inspect.getdoc(function) or "")
    if not summary:
        raise ValueError(f"tool {name}: needs a docstring saying what it does (it becomes its description)")
    parameters = []
    for parameter_name in names[1:]:
        parameter = signature.parameters[parameter_name]
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ValueError(f"tool {name}: *args and **kwargs are not supported; name every argument")
        if parameter_name not in hints:
            raise ValueError(f"tool {name}: argument {parameter_name!r} needs a type hint")
        required = parameter.default is inspect.Parameter.empty
        schema = type_schema(hints[parameter_name], f"tool {name}, argument {parameter_name}")
        parameters.append(
            Parameter(
                name=parameter_name,
                schema=schema,
                required=required,
                default=None if required else parameter.default,
                description=argument_docs.get(parameter_name, ""),
            )
        )
    spec = ToolSpec(
        name=name,
        function=function,
        description=summary,
        parameters=tuple(parameters),
        write=write,
        owner=owner,
    )
    spec._by_name.update({p.name: p for p in parameters})
    return spec


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph, one line) and the per-argument descriptions of `Args:`."""
    lines = doc.splitlines()
    summary_lines: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line):
            break
        summary_lines.append(line.strip())
    descriptions: dict[str, str] = {}
    in_args = False
    current: str | None = None
    indent = 0
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if _SECTION_HEADER.match(line):
            break
        match = _ARG_LINE.match(line)
        if match and (current is None or len(match.group(1)) <= indent):
            current, indent = match.group(2), len(match.group(1))
            descriptions[current] = match.group(3).strip()
        elif current is not None and line.strip():
            descriptions[current] = f"{descriptions[current]} {line.strip()}".strip()
    return " ".join(summary_lines), descriptions


def type_schema(hint: Any, where: str) -> dict[str, Any]:
    """The JSON schema of a type hint; ValueError for types a tool argument cannot have."""
    origin = get_origin(hint)
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if origin is Literal:
        choices = list(get_args(hint))
        kinds = {type(choice) for choice in choices}
        if kinds == {str}:
            return {"type": "string", "enum": choices}
        if kinds == {int}:
            return {"type": "integer", "enum": choices}
        raise ValueError(f"{where}: Literal choices must be all strings or all integers")
    if origin in (list, tuple) or hint in (list, tuple):
        items = get_args(hint)
        if origin is tuple and not (len(items) == 2 and items[1] is Ellipsis):
            raise ValueError(f"{where}: use list[T] (or tuple[T, ...]) for a list argument")
        item = items[0] if items else str
        return {"type": "array", "items": type_schema(item, where)}
    if origin in (typing.Union, types.UnionType):
        options = [option for option in get_args(hint) if option is not type(None)]
        if len(options) == 1 and len(get_args(hint)) == 2:
            inner = type_schema(options[0], where)
            return {**inner, "nullable": True}
        raise ValueError(f"{where}: unions other than `T | None` are not supported")
    raise ValueError(f"{where}: unsupported type {hint!r}; use str, int, float, bool, list[T] or Literal")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown)}"
    if isinstance(value, list | tuple):
        return f"array of {len(value)}"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _check_value(value: Any, schema: Mapping[str, Any], where: str) -> Any:
    if value is None:
        if schema.get("nullable"):
            return None
        raise ToolArgumentError(f"{where} must not be null")
    kind = schema["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise ToolArgumentError(f"{where} must be a string, got {_json_kind(value)}")
        if len(value) > MAX_STRING_CHARS:
            raise ToolArgumentError(
                f"{where} is too long ({len(value)} characters; the limit is {MAX_STRING_CHARS})"
            )
    elif kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ToolArgumentError(f"{where} must be an integer, got {_json_kind(value)}")
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ToolArgumentError(f"{where} must be a number, got {_json_kind(value)}")
        if not math.isfinite(value):
            raise ToolArgumentError(f"{where} must be a finite number")
        value = float(value)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ToolArgumentError(f"{where} must be true or false, got {_json_kind(value)}")
    elif kind == "array":
        if not isinstance(value, list | tuple):
            raise ToolArgumentError(f"{where} must be a list, got {_json_kind(value)}")
        if len(value) > MAX_LIST_ITEMS:
            raise ToolArgumentError(f"{where} has {len(value)} items; the limit is {MAX_LIST_ITEMS}")
        value = [_check_value(item, schema["items"], f"{where}[{i}]") for i, item in enumerate(value)]
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(choice) for choice in schema["enum"])
        raise ToolArgumentError(f"{where} must be one of {choices}, got {_json_kind(value)}")
    return value


def format_result(result: Any) -> str:
    """A tool's return value as the text its caller reads (strings as they are, the rest as JSON)."""
    if isinstance(result, str):
        return result
    return json.dumps(result, ensure_ascii=False, default=str)


def run_tool(spec: ToolSpec, context: ToolContext, arguments: dict[str, Any]) -> str:
    """Call a tool with checked arguments inside a savepoint; returns its answer text.

    Raises ToolError (the tool's own refusal, or a database error turned into one); either way
    the database is rolled back to what it was before the call.
    """
    db = context.db
    db.execute("SAVEPOINT tool_call")
    try:
        result = spec.function(context, **arguments)
    except sqlite3.Error as exc:
        _roll_back(db)
        raise ToolError(f"{spec.name}: the database refused the change ({exc})") from exc
    except Exception:
        _roll_back(db)
        raise
    db.execute("RELEASE tool_call")
    return format_result(result)


def _roll_back(db: sqlite3.Connection) -> None:
    db.execute("ROLLBACK TO tool_call")
    db.execute("RELEASE tool_call")


def iso_time(seconds: float) -> str:
    """Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """`YYYY-MM-DD[THH:MM[:SS]][Z]` (UTC unless an offset is given) as Unix seconds."""
    cleaned = text.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError as exc:
        raise ValueError(f"time {text!r} is not ISO 8601, e.g. 2024-06-10T15:00:00Z") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def clock_text(seconds: float) -> str:
    """The world clock as people read it: `2024-06-10 15:00 UTC`."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


__all__ = [
    "MAX_LIST_ITEMS",
    "MAX_STRING_CHARS",
    "Parameter",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolOwner",
    "ToolSpec",
    "build_spec",
    "clock_text",
    "format_result",
    "iso_time",
    "parse_docstring",
    "parse_time",
    "run_tool",
    "tool",
    "tool_spec",
    "type_schema",
]


_ARITHMETIC: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _arithmetic_node(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _arithmetic_node(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return float(_ARITHMETIC[type(node.op)](_arithmetic_node(node.left), _arithmetic_node(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _ARITHMETIC:
        return float(_ARITHMETIC[type(node.op)](_arithmetic_node(node.operand)))
    raise ToolError("only numbers, + - * / and parentheses are allowed")


def arithmetic(expression: str, *, max_chars: int = 200) -> float:
    """The value of an arithmetic expression (numbers, + - * / and parentheses), for domains'
    `calculate` tools. Parsed with `ast`, never `eval`: anything else is a `ToolError`."""
    if len(expression) > max_chars:
        raise ToolError(f"the expression is too long (at most {max_chars} characters)")
    try:
        return _arithmetic_node(ast.parse(expression, mode="eval"))
    except SyntaxError as exc:
        raise ToolError(f"cannot read the expression: {exc.msg}") from exc
    except ZeroDivisionError as exc:
        raise ToolError("division by zero") from exc
