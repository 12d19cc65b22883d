"""What an agent sees of a web page: its elements, ranked and pruned to fit a context budget.

The browser (`palaestra.envs.web.browser`, running `observe.js`) lists the visible elements worth
naming, in document order, each with a stable id (`[12]`): controls (links, buttons, text boxes,
check boxes, selects) with their accessible names and values, headings, table rows (cells joined
by ` | `) and text. A whole page can be far larger than an agent's context, so, as WebLINX does
(docs/references.md, WebLINX), the elements are candidates ranked against the task and the
dialogue so far, and only the best that fit the budget are shown, in page order, with a line
saying how many were left out. WebLINX ranks with a trained dense retriever; here the score is
BM25 between each element's line and the query (the task, the latest instructions, the last
action), plus a prior for controls and headings, so that ranking needs no model and repeats
exactly.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTROL_ROLES = frozenset(
    {
        "link",
        "button",
        "textbox",
        "searchbox",
        "checkbox",
        "radio",
        "combobox",
        "listbox",
        "slider",
        "spinbutton",
        "tab",
        "menuitem",
        "switch",
        "option",
        "clickable",
    }
)
TYPABLE_ROLES = frozenset({"textbox", "searchbox", "spinbutton", "combobox"})
SELECTABLE_ROLES = frozenset({"combobox", "listbox"})
_TOKEN = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_ROLE_PRIOR = {"heading": 0.6, "row": 0.3}
_CONTROL_PRIOR = 0.8
_IN_VIEW_PRIOR = 0.2


@dataclass(frozen=True, slots=True)
class Element:
    """One element of the page as `observe.js` reported it.

    Fields:
        pid: its stable id on this page (what actions name: `click [12]`).
        role: `link`, `button`, `textbox`, `checkbox`, `combobox`, `heading`, `row`, `text`, ...
        name: its accessible name (a control's label, a row's cells, a text's words).
        value: a field's current value (a select's chosen option), None for others.
        checked: a check box's or radio button's state, None for others.
        options: a select's option labels.
        disabled: whether the control refuses input.
        href: a link's target as written in the page.
        in_view: whether it is inside the viewport now.
        top: its distance from the top of the document, in pixels.
    """

    pid: int
    role: str
    name: str
    value: str | None = None
    checked: bool | None = None
    options: tuple[str, ...] = ()
    disabled: bool = False
    href: str | None = None
    in_view: bool = True
    top: int = 0

    @classmethod
    def from_report(cls, data: Mapping[str, Any]) -> Element:
        return cls(
            pid=int(data["pid"]),
            role=str(data.get("role") or "text"),
            name=str(data.get("name") or ""),
            value=None if data.get("value") is None else str(data["value"]),
            checked=None if data.get("checked") is None else bool(data["checked"]),
            options=tuple(str(option) for option in data.get("options") or ()),
            disabled=bool(data.get("disabled")),
            href=None if data.get("href") is None else str(data["href"]),
            in_view=bool(data.get("inView", True)),
            top=int(data.get("top") or 0),
        )

    @property
    def is_control(self) -> bool:
        return self.role in CONTROL_ROLES

    def line(self) -> str:
        """`[12] button "Add to cart"`, `[7] textbox "Search" value="lamp"`, `[9] checkbox "Gift" checked`."""
        parts = [f"[{self.pid}] {self.role} {_quote(self.name)}"]
        if self.value is not None and self.role != "text":
            parts.append(f"value={_quote(self.value)}")
        if self.checked is not None:
            parts.append("checked" if self.checked else "unchecked")
        if self.options:
            parts.append("options=" + "|".join(self.options))
        if self.disabled:
            parts.append("disabled")
        return " ".join(parts)


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'").replace("\n", "\\n") + '"'


@dataclass(frozen=True, slots=True)
class PageState:
    """A page at one moment: where it is and what it holds.

    Fields:
        path: the URL without the site's origin (`/search?q=lamp`); the port changes between
            episodes, the path does not.
        title: the document title.
        elements: every element `observe.js` listed, in document order.
        scroll: how far down the page is scrolled, 0-100 (%).
    """

    path: str
    title: str
    elements: tuple[Element, ...]
    scroll: int = 0
    by_pid: Mapping[int, Element] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_report(cls, report: Mapping[str, Any], path: str) -> PageState:
        elements = tuple(Element.from_report(item) for item in report.get("elements") or ())
        scroll_max = int(report.get("scrollMax") or 0)
        scroll = round(100 * int(report.get("scrollY") or 0) / scroll_max) if scroll_max else 0
        return cls(
            path=path,
            title=str(report.get("title") or ""),
            elements=elements,
            scroll=scroll,
            by_pid={element.pid: element for element in elements},
        )

    def element(self, pid: int) -> Element | None:
        return self.by_pid.get(pid)

    def find(
        self, role: str | None = None, name: str | None = None, contains: str | None = None
    ) -> list[Element]:
        """The elements with this role (any when None) whose name is `name` (case and spacing
        aside) or holds `contains`."""
        wanted = _normal(name) if name is not None else None
        part = _normal(contains) if contains is not None else None
        return [
            element
            for element in self.elements
            if (role is None or element.role == role)
            and (wanted is None or _normal(element.name) == wanted)
            and (part is None or part in _normal(element.name))
        ]


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def tokens(text: str) -> list[str]:
    """Lower-case word tokens (`$39.99` -> `39.99`, `Kim's` -> `kim's`)."""
    return _TOKEN.findall(text.lower())


def rank(elements: Sequence[Element], query: str, *, k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Each element's relevance to `query`: BM25 of its line against the query's words (the page's
    elements are the collection), plus a prior for controls, headings and what is in view."""
    documents = [
        tokens(f"{element.name} {element.value or ''} {' '.join(element.options)}") for element in elements
    ]
    wanted = Counter(tokens(query))
    count = len(documents) or 1
    average = sum(len(words) for words in documents) / count or 1.0
    frequency: Counter[str] = Counter()
    for words in documents:
        frequency.update(set(words))
    scores = []
    for element, words in zip(elements, documents, strict=True):
        held = Counter(words)
        score = 0.0
        for word, times in wanted.items():
            seen = held.get(word, 0)
            if not seen:
                continue
            idf = math.log(1 + (count - frequency[word] + 0.5) / (frequency[word] + 0.5))
            score += times * idf * seen * (k1 + 1) / (seen + k1 * (1 - b + b * len(words) / average))
        if element.is_control:
            score += _CONTROL_PRIOR
        score += _ROLE_PRIOR.get(element.role, 0.0)
        if element.in_view:
            score += _IN_VIEW_PRIOR
        scores.append(score)
    return scores


@dataclass(frozen=True, slots=True)
class Pruned:
    """The elements shown of a page: `shown` in page order, and how many there were."""

    shown: tuple[Element, ...]
    total: int

    @property
    def left_out(self) -> int:
        return self.total - len(self.shown)


def prune(elements: Sequence[Element], query: str, budget: int) -> Pruned:
    """The best-ranked elements whose lines fit in `budget` characters, in page order (all of
    them when they fit, or when `budget` is 0)."""
    lines = [element.line() for element in elements]
    if budget <= 0 or sum(len(line) + 1 for line in lines) <= budget:
        return Pruned(tuple(elements), len(elements))
    scores = rank(elements, query)
    order = sorted(range(len(elements)), key=lambda index: (-scores[index], index))
    kept: list[int] = []
    used = 0
    for index in order:
        cost = len(lines[index]) + 1
        if used + cost > budget:
            continue
        kept.append(index)
        used += cost
    return Pruned(tuple(elements[index] for index in sorted(kept)), len(elements))


def page_text(page: PageState, query: str, budget: int) -> tuple[str, Pruned]:
    """The page as the observation shows it: a header line and one line per element shown."""
    pruned = prune(page.elements, query, budget)
    if pruned.left_out:
        header = (
            f"Page: {len(pruned.shown)} of {pruned.total} elements shown (ranked for the task; "
            f"{pruned.left_out} left out)"
        )
    else:
        header = f"Page: {pruned.total} elements"
    if page.scroll:
        header += f", scrolled {page.scroll}%"
    lines = [header, *(element.line() for element in pruned.shown)]
    return "\n".join(lines), pruned


def pids(elements: Iterable[Element]) -> list[int]:
    return [element.pid for element in elements]
