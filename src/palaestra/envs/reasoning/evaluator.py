"""A restricted expression evaluator: the calculator and the restricted-Python tool.

Team members (`palaestra.envs.teams`) call tools by writing `calc: 3+4*2` or
`python: sorted([5, 2, 9])`; the arithmetic generator's solver reads its own questions with the
calculator. Both walk Python's own parse tree (`ast.parse(text, mode="eval")`) and evaluate only a
whitelist of nodes, so no text an agent writes can reach an attribute, an import, a name outside
the whitelist, or a loop without a bound:

- `calculate(text)`: numbers, `+ - * / // % **`, unary signs and parentheses, in exact rational
  arithmetic (`/` never rounds: `7/2` is `7/2`, shown as `3.5`);
- `evaluate(text)`: one Python expression over literals (numbers, strings, lists, tuples, sets,
  dicts), arithmetic, comparisons, `and`/`or`/`not`, `x if c else y`, indexing and slicing,
  comprehensions, and the functions in `FUNCTIONS` (`sorted`, `min`, `max`, `sum`, `len`, ...).

Bounds keep every call cheap: at most `MAX_TEXT` characters of input, `MAX_STEPS` evaluated nodes,
sequences of at most `MAX_ITEMS` items, integers of at most `MAX_BITS` bits, exponents up to
`MAX_EXPONENT`. Anything else is a `ToolError` whose message is one line an agent can act on.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

MAX_TEXT = 500
MAX_STEPS = 20_000
MAX_ITEMS = 10_000
MAX_BITS = 512
MAX_EXPONENT = 128


class ToolError(ValueError):
    """An expression the tool will not evaluate, or one that failed; the message is one line."""


def _bounded_range(*bounds: int) -> list[int]:
    values = range(*bounds)
    if len(values) > MAX_ITEMS:
        raise ToolError(f"range of {len(values)} numbers is over the {MAX_ITEMS}-item limit")
    return list(values)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "float": float,
    "int": int,
    "len": len,
    "list": list,
    "max": max,
    "min": min,
    "range": _bounded_range,
    "reversed": lambda items: list(reversed(items)),
    "round": round,
    "set": set,
    "sorted": sorted,
    "str": str,
    "sum": sum,
    "tuple": tuple,
}
"""The functions `evaluate` may call, by name (keyword arguments: `sorted(xs, reverse=True)`)."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
    ast.Not: operator.not_,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def _parse(text: str) -> ast.expr:
    source = text.strip()
    if not source:
        raise ToolError("empty expression; write one, e.g. calc: 3+4*2")
    if len(source) > MAX_TEXT:
        raise ToolError(f"expression of {len(source)} characters is over the {MAX_TEXT}-character limit")
    try:
        return ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise ToolError(f"not a valid expression ({exc.msg})") from None


class _Evaluator:
    """One evaluation: the step budget and the comprehension variables in scope."""

    def __init__(self, *, rational: bool, python: bool) -> None:
        self.rational = rational
        self.python = python
        self.steps = 0
        self.scope: dict[str, Any] = {}

    def run(self, node: ast.expr) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ToolError(f"the expression takes more than {MAX_STEPS} steps")
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None or (not self.python and type(node).__name__ not in _ARITHMETIC_NODES):
            allowed = "numbers, + - * / // % ** and parentheses" if not self.python else "an expression"
            raise ToolError(f"{type(node).__name__} is not allowed here; use {allowed}")
        return _checked(method(node))

    def _Constant(self, node: ast.Constant) -> Any:
        value = node.value
        if isinstance(value, bool) or value is None:
            if not self.python:
                raise ToolError("only numbers are allowed in the calculator")
            return value
        if isinstance(value, int | float):
            return Fraction(value) if self.rational and isinstance(value, int) else value
        if isinstance(value, str) and self.python:
            return value
        raise ToolError(f"constant {value!r} is not allowed")

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.run(node.left), self.run(node.right)
        kind = type(node.op)
        if kind not in _BINARY:
            raise ToolError(f"operator {kind.__name__} is not allowed")
        if kind is ast.Pow:
            _check_power(left, right)
        if kind is ast.Mult:
            _check_repeat(left, right)
        try:
            return _BINARY[kind](left, right)
        except ZeroDivisionError:
            raise ToolError("division by zero") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ToolError(f"cannot compute that: {exc}") from None

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        kind = type(node.op)
        if kind not in _UNARY or (kind is ast.Not and not self.python):
            raise ToolError(f"operator {kind.__name__} is not allowed")
        operand = self.run(node.operand)
        try:
            return _UNARY[kind](operand)
        except TypeError as exc:
            raise ToolError(f"cannot compute that: {exc}") from None

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.run(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.run(comparator)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError as exc:
                raise ToolError(f"cannot compare: {exc}") from None
            left = right
        return True

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for operand in node.values:
            value = self.run(operand)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    def _List(self, node: ast.List) -> list[Any]:
        return [self.run(item) for item in node.elts]

    def _Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.run(item) for item in node.elts)

    def _Set(self, node: ast.Set) -> set[Any]:
        return {self.run(item) for item in node.elts}

    def _Dict(self, node: ast.Dict) -> dict[Any, Any]:
        if any(key is None for key in node.keys):
            raise ToolError("** in a dict is not allowed")
        return {self.run(key): self.run(value) for key, value in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]

    def _Subscript(self, node: ast.Subscript) -> Any:
        container = self.run(node.value)
        index = self._slice(node.slice) if isinstance(node.slice, ast.Slice) else self.run(node.slice)
        try:
            return container[index]
        except (IndexError, KeyError, TypeError) as exc:
            raise ToolError(f"cannot index: {type(exc).__name__} {exc}") from None

    def _slice(self, node: ast.Slice) -> slice:
        parts = [None if part is None else self.run(part) for part in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise ToolError(f"unknown name {node.id!r}; only comprehension variables and {_function_list()}")

    def _Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ToolError(f"only these functions may be called: {_function_list()}")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ToolError("*arguments are not allowed")
        args = [self.run(arg) for arg in node.args]
        keywords = {}
        for keyword in node.keywords:
            if keyword.arg != "reverse":
                raise ToolError("the only keyword argument allowed is reverse=")
            keywords["reverse"] = self.run(keyword.value)
        try:
            return FUNCTIONS[node.func.id](*args, **keywords)
        except ToolError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise ToolError(f"{node.func.id}() failed: {exc}") from None

    def _comprehension(self, generators: list[ast.comprehension], emit: Callable[[], None]) -> None:
        first, rest = generators[0], generators[1:]
        if not isinstance(first.target, ast.Name) or first.is_async:
            raise ToolError("a comprehension variable must be a plain name")
        items = self.run(first.iter)
        if not isinstance(items, Iterable):
            raise ToolError("a comprehension needs something to iterate over")
        for count, item in enumerate(items):
            if count >= MAX_ITEMS:
                raise ToolError(f"a comprehension over more than {MAX_ITEMS} items")
            self.scope[first.target.id] = item
            if all(self.run(condition) for condition in first.ifs):
                if rest:
                    self._comprehension(rest, emit)
                else:
                    emit()
        self.scope.pop(first.target.id, None)

    def _ListComp(self, node: ast.ListComp) -> list[Any]:
        out: list[Any] = []
        self._comprehension(node.generators, lambda: out.append(self.run(node.elt)))
        return out

    def _GeneratorExp(self, node: ast.GeneratorExp) -> list[Any]:
        out: list[Any] = []
        self._comprehension(node.generators, lambda: out.append(self.run(node.elt)))
        return out

    def _SetComp(self, node: ast.SetComp) -> set[Any]:
        out: set[Any] = set()
        self._comprehension(node.generators, lambda: out.add(self.run(node.elt)))
        return out


_ARITHMETIC_NODES = frozenset({"Constant", "BinOp", "UnaryOp"})


def _function_list() -> str:
    return ", ".join(sorted(FUNCTIONS))


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, int | Fraction) and abs(Fraction(exponent)) > MAX_EXPONENT:
        raise ToolError(f"exponent {exponent} is over the limit of {MAX_EXPONENT}")
    if isinstance(exponent, Fraction) and exponent.denominator != 1:
        raise ToolError("fractional exponents are not allowed in the calculator")


def _check_repeat(left: Any, right: Any) -> None:
    for sequence, count in ((left, right), (right, left)):
        repeated = isinstance(sequence, str | list | tuple) and isinstance(count, int)
        if repeated and len(sequence) * max(count, 0) > MAX_ITEMS:
            raise ToolError(f"a repeated sequence over the {MAX_ITEMS}-item limit")


def _checked(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise ToolError(f"a number over {MAX_BITS} bits")
    if (
        isinstance(value, Fraction)
        and max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS
    ):
        raise ToolError(f"a number over {MAX_BITS} bits")
    if isinstance(value, str | list | tuple | set | dict) and len(value) > MAX_ITEMS:
        raise ToolError(f"a result of {len(value)} items is over the {MAX_ITEMS}-item limit")
    return value


def format_number(value: Fraction | int | float) -> str:
    """`11`, `-3`, `3.5`, `1/3 (≈ 0.333333)`: integers exactly, other rationals as a decimal when
    it ends, else as a fraction with a rounded decimal."""
    if isinstance(value, float):
        return f"{value:.10g}"
    fraction = Fraction(value)
    if fraction.denominator == 1:
        return str(fraction.numerator)
    denominator = fraction.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:
        return f"{float(fraction):.12g}"
    return f"{fraction.numerator}/{fraction.denominator} (≈ {float(fraction):.6g})"


def calculate(text: str) -> Fraction:
    """The exact value of an arithmetic expression; ToolError for anything else."""
    value = _Evaluator(rational=True, python=False).run(_parse(text))
    if not isinstance(value, Fraction | int | float):
        raise ToolError("the calculator computes numbers only")
    return Fraction(value)


def evaluate(text: str) -> Any:
    """The value of one restricted Python expression (see the module docstring); ToolError otherwise."""
    return _Evaluator(rational=False, python=True).run(_parse(text))


def show(value: Any) -> str:
    """A tool result as an agent reads it (at most 300 characters)."""
    text = format_number(value) if isinstance(value, Fraction) else repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["FUNCTIONS", "ToolError", "calculate", "evaluate", "format_number", "show"]
