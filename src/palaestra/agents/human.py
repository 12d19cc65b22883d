"""The `human` agent: a person at the terminal plays a seat.

Each turn it prints the new messages and the numbered legal actions, then reads one line without
blocking the event loop (other seats and episodes keep running). The person types an action or
its number; bad input is answered with one line and asked again; `quit`, `exit` or end of input
stops the run with `HumanQuit`. Input and output are injectable for tests and other front ends.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from palaestra.agents.base import AgentFactory, AgentView, register_agent
from palaestra.core.env import Action
from palaestra.core.messages import Message

QUIT_WORDS = frozenset({"quit", "exit", ":q"})
_NUMBER = re.compile(r"^#?\s*(\d+)$")
_STYLE_BY_ROLE = {"system": "dim", "user": "cyan", "assistant": "green", "tool": "magenta"}


class HumanQuit(KeyboardInterrupt):
    """The person quit (typed `quit` or closed the input).

    A KeyboardInterrupt on purpose: like Ctrl-C it stops the whole run instead of being recorded
    as one failed episode and followed by the next, which is what someone who typed `quit` wants.
    """


class HumanAgent:
    """A person choosing actions at a terminal.

    Args:
        input_fn: reads one line given a prompt (default: the built-in `input`); it runs in a
            worker thread. EOFError from it means the person closed the input.
        console: where messages are printed (default: a new rich Console on stdout).
        show_system: print system messages too (the game's one-line role prompt).
    """

    def __init__(
        self,
        input_fn: Callable[[str], str] = input,
        console: Console | None = None,
        *,
        show_system: bool = True,
    ) -> None:
        self.input_fn = input_fn
        self.console = console or Console()
        self.show_system = show_system

    async def act(self, view: AgentView) -> Action:
        self.console.rule(Text(f"{view.player} · turn {view.turn + 1}", style="bold"))
        for message in view.messages:
            self._show(message)
        legal = list(view.legal_actions) if view.legal_actions is not None else None
        if legal:
            self._show_legal(legal)
        elif legal is not None:
            self.console.print("[yellow]No legal actions were offered; anything you type is sent as is.[/]")
        while True:
            try:
                line = await asyncio.to_thread(self.input_fn, f"{view.player}> ")
            except EOFError:
                raise HumanQuit(f"{view.player} closed the input; stopping") from None
            text = line.strip()
            if not text:
                self.console.print("Type an action (or its number); 'quit' stops.", style="yellow")
                continue
            chosen = choose_action(text, legal)
            if chosen is not None:
                return chosen
            if text.lower() in QUIT_WORDS:
                raise HumanQuit(f"{view.player} typed {text!r}; stopping")
            self.console.print(Text(_refusal(text, legal), style="red"))

    def _show(self, message: Message) -> None:
        if message.role == "system" and not self.show_system:
            return
        body = Text(message.content or "")
        for call in message.tool_calls:
            body.append(
                f"\n→ {call.name}({call.arguments if call.raw_arguments is None else call.raw_arguments})"
            )
        title = message.role if message.name is None else f"{message.role} · {message.name}"
        style = _STYLE_BY_ROLE.get(message.role, "white")
        self.console.print(Panel(body, title=title, title_align="left", border_style=style))

    def _show_legal(self, legal: Sequence[str]) -> None:
        marker = "#" if _has_numeric(legal) else ""
        listing = Text("Legal actions: ", style="bold")
        for index, action in enumerate(legal, start=1):
            if index > 1:
                listing.append("  ")
            listing.append(f"{marker}{index}", style="bold yellow")
            listing.append(f") {action}")
        self.console.print(listing)
        if marker:
            self.console.print(Text("Type the action itself, or #N to pick by number.", style="dim"))


def _has_numeric(legal: Sequence[str]) -> bool:
    return any(action.strip().isdigit() for action in legal)


def choose_action(text: str, legal: Sequence[str] | None) -> str | None:
    """The legal action a typed line names, or None when it names none.

    Free-form envs (`legal` is None) take any non-empty line. Otherwise the line may be an
    action (case ignored) or its 1-based number; when some actions are themselves numbers
    (tic-tac-toe cells), a bare number means the action and `#N` picks by position.
    """
    text = text.strip()
    if legal is None:
        return text or None
    lowered = text.lower()
    for action in legal:
        if action.lower() == lowered:
            return action
    match = _NUMBER.match(text)
    if match and (text.startswith("#") or not _has_numeric(legal)):
        index = int(match.group(1))
        if 1 <= index <= len(legal):
            return legal[index - 1]
    return None


def _refusal(text: str, legal: Sequence[str] | None) -> str:
    if not legal:
        return "Type something to send; 'quit' stops."
    shown = text if len(text) <= 40 else text[:37] + "..."
    marker = "#" if _has_numeric(legal) else ""
    return (
        f"{shown!r} is not a legal action; type one of: {', '.join(legal)} "
        f"(or {marker}1-{marker}{len(legal)}); 'quit' stops."
    )


@register_agent("human", "a person at the terminal (type an action or its number)")
def human_agent() -> AgentFactory:
    return HumanAgent
