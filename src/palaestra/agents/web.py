"""Agents for the web and GUI worlds (`palaestra.envs.web`): the gold script, baselines that must
fail, the scripted instructor and the screen-graph solver.

- `web_gold`: plays the episode's gold solution from the env's privileged view (a site task's gold
  script, a conversational task's navigator script, a MiniWoB++ task's scripted solver): 1.0 on
  every valid task. In the `navigator` seat of `weblinx-v0` it asks the instructor for the next
  instruction where its script says so.
- `web_random`: clicks a random control of the page it was shown (links, buttons, check boxes),
  now and then types a random word into a text field or picks a random option; never answers.
  Reads only its observation. It should fail nearly every task.
- `web_noop`: does nothing: answers at once, with nothing.
- `web_spray`: an adversary for information tasks: answers at once with as much of the page's
  text as an answer may hold, hoping the right value is in it (the tasks' `reject` strings and
  the answer length limit make it fail).
- `web_instructor`: the scripted instructor of `weblinx-v0` (its `instructor` seat): says the
  task's utterances one at a time and answers questions from the task's facts.
- `gui_solver`: plays `gui_graph-v0` perfectly (a shortest path on the app's graph, from the
  env's privileged view).

Scripted agents read the env's privileged view (`AgentView.privileged`), duck-typed: agents
import nothing of the envs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from palaestra.agents.base import AgentError, AgentFactory, AgentView, decision_rng, register_agent
from palaestra.core.env import Action
from palaestra.core.messages import Message

_LINE = re.compile(r'^\[(\d+)\] ([a-z]+) "(.*?)"(.*)$')
_CLICKABLE = frozenset({"link", "button", "checkbox", "radio", "tab", "menuitem", "switch"})
_TYPABLE = frozenset({"textbox", "searchbox", "spinbutton"})
_WORDS = ("hello", "lamp", "2", "test", "blue", "yes", "order", "10", "cancel", "price")
MAX_SPRAY = 300


@runtime_checkable
class _Scripted(Protocol):
    def act(self, state: Any) -> str: ...


def _privileged(view: AgentView, method: str, agent: str) -> Any:
    privileged = view.privileged
    if privileged is None or not callable(getattr(privileged, method, None)):
        raise AgentError(f"{agent} plays the web envs (web-v0, weblinx-v0, miniwob-v0, gui_graph-v0) only")
    return privileged


def page_lines(messages: Sequence[Message]) -> list[tuple[int, str, str, str]]:
    """The `[id] role "name" rest` lines of the latest observation that lists a page."""
    for message in reversed(messages):
        text = message.content or ""
        if message.role == "system" or "Page:" not in text:
            continue
        found = []
        for line in text.splitlines():
            match = _LINE.match(line)
            if match:
                found.append((int(match.group(1)), match.group(2), match.group(3), match.group(4)))
        return found
    return []


class GoldAgent:
    """Plays the privileged view's gold solution (`view.privileged.gold()`, fed the live page)."""

    def __init__(self) -> None:
        self.policy: _Scripted | None = None

    async def act(self, view: AgentView) -> Action:
        privileged = _privileged(view, "gold", "web_gold")
        if self.policy is None:
            self.policy = privileged.gold()
        return self.policy.act(privileged.page)


class RandomClickAgent:
    """Random controls of the page it was shown; never answers (see the module docstring).

    Args:
        type_share: how often it types a random word into a text field instead of clicking.
        back_share: how often it goes back.
    """

    def __init__(self, type_share: float = 0.1, back_share: float = 0.05) -> None:
        if not 0 <= type_share <= 1 or not 0 <= back_share <= 1:
            raise AgentError("web_random type_share and back_share must be between 0 and 1")
        self.type_share = type_share
        self.back_share = back_share
        self.lines: list[tuple[int, str, str, str]] = []

    async def act(self, view: AgentView) -> Action:
        rng = decision_rng(view)
        self.lines = page_lines(view.messages) or self.lines
        clickable = [line for line in self.lines if line[1] in _CLICKABLE]
        typable = [line for line in self.lines if line[1] in _TYPABLE]
        selects = [line for line in self.lines if line[1] == "combobox" and "options=" in line[3]]
        draw = rng.random()
        if draw < self.back_share:
            return "back"
        if draw < self.back_share + self.type_share and typable:
            return f'type [{rng.choice(typable)[0]}] "{rng.choice(_WORDS)}"'
        if draw < self.back_share + self.type_share + 0.1 and selects:
            pid, _, _, rest = rng.choice(selects)
            options = rest.split("options=", 1)[1].split(" disabled")[0].split("|")
            return f'select [{pid}] "{rng.choice(options)}"'
        if clickable:
            return f"click [{rng.choice(clickable)[0]}]"
        return "scroll down"


class NoopAgent:
    """Does nothing: answers at once, with nothing."""

    async def act(self, view: AgentView) -> Action:
        return "answer"


class SprayAgent:
    """Answers at once with the page's text, as much as an answer may hold."""

    async def act(self, view: AgentView) -> Action:
        names = [name for _, _, name, _ in page_lines(view.messages)]
        blob = " ; ".join(names)[:MAX_SPRAY].replace('"', "'")
        return f'answer "{blob}"'


class InstructorAgent:
    """The scripted instructor of a conversational web task (`view.privileged.instructor()`)."""

    def __init__(self) -> None:
        self.policy: Any = None

    async def act(self, view: AgentView) -> Action:
        privileged = _privileged(view, "instructor", "web_instructor")
        if self.policy is None:
            self.policy = privileged.instructor()
        reply: str = self.policy.act(view.messages)
        return reply


class GuiSolverAgent:
    """A shortest path to the task's goal on the app's screen graph (`view.privileged.solve()`)."""

    async def act(self, view: AgentView) -> Action:
        privileged = _privileged(view, "solve", "gui_solver")
        action: str = privileged.solve()
        return action


@register_agent(
    "web_gold", "web envs: plays the task's gold script (site tasks, weblinx navigator, MiniWoB solvers)"
)
def web_gold() -> AgentFactory:
    return GoldAgent


@register_agent("web_random", "web envs: random clicks on the page shown (web_random:type_share=0.1)")
def web_random(type_share: float = 0.1, back_share: float = 0.05) -> AgentFactory:
    return lambda: RandomClickAgent(type_share, back_share)


@register_agent("web_noop", "web envs: does nothing (answers at once, empty)")
def web_noop() -> AgentFactory:
    return NoopAgent


@register_agent("web_spray", "web envs: answers at once with the page's text (an exploit probe)")
def web_spray() -> AgentFactory:
    return SprayAgent


@register_agent(
    "web_instructor", "weblinx-v0, instructor seat: the task's utterances one at a time, answers questions"
)
def web_instructor() -> AgentFactory:
    return InstructorAgent


@register_agent("gui_solver", "gui_graph-v0: a shortest path to the goal on the screen graph (perfect play)")
def gui_solver() -> AgentFactory:
    return GuiSolverAgent
