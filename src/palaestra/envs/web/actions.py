"""The web envs' action language: what an agent writes, parsed into a `WebAction`.

    click [12]                     click element 12
    type [7] "desk lamp"           replace the text of field 7 (add `enter` to press Enter after;
                                   `\n` in the text starts a new line)
    select [9] "Large"             choose an option of select 9 (by its label, or its value)
    scroll down | scroll up        move the viewport by most of a screen (`scroll [12]`: to element 12)
    goto /cart                     open a page of the site (a path, or a URL on the site)
    back                           the browser's back button
    answer "42"                    end the episode with this answer (`answer` alone: done)
    say "Which size?"              conversational envs only: speak to the instructor

The action may sit inside `<answer>…</answer>` (the MARS layout) or stand alone, in any case, the
element id with or without brackets, the text in double or single quotes or unquoted to the end
of the line. Anything else is refused with a one-line reason (`ActionError`), which the env shows
the agent as an observation: a bad action never ends an episode by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from palaestra.core.answers import last_answer

KINDS = ("click", "type", "select", "scroll", "goto", "back", "answer", "say")
HELP = (
    'Actions: click [id] | type [id] "text" [enter] | select [id] "option" | scroll down|up | '
    'goto /path | back | answer "text"'
)
SAY_HELP = ' | say "text" (to the instructor)'
MAX_TEXT = 500
_ALIASES = {"stop": "answer", "done": "answer", "fill": "type", "open": "goto", "go": "goto", "tell": "say"}
_ID = r"\[?\s*(\d{1,6})\s*\]?"
_VERB = re.compile(r"^\s*([a-zA-Z_]+)\b\s*(.*)$", re.DOTALL)
_ID_ONLY = re.compile(rf"^{_ID}\s*$")
_ID_AND_TEXT = re.compile(rf"^{_ID}\s*(.*)$", re.DOTALL)


class ActionError(ValueError):
    """An action the env cannot run, with the reason in one line."""


@dataclass(frozen=True, slots=True)
class WebAction:
    """One parsed action.

    Fields:
        kind: one of `KINDS`.
        pid: the element it acts on (click, type, select, scroll to an element), else None.
        text: what to type, the option to select, the answer, the utterance, or the URL.
        enter: `type ... enter`: press Enter after typing.
        direction: `scroll`: `down` or `up` (None when scrolling to an element).
    """

    kind: str
    pid: int | None = None
    text: str = ""
    enter: bool = False
    direction: str | None = None

    def __str__(self) -> str:
        target = f" [{self.pid}]" if self.pid is not None else ""
        if self.kind == "scroll":
            return f"scroll {self.direction}" if self.direction else f"scroll{target}"
        if self.kind in ("type", "select", "answer", "say"):
            said = f' "{self.text}"' if self.text or self.kind != "answer" else ""
            return f"{self.kind}{target}{said}{' enter' if self.enter else ''}"
        if self.kind == "goto":
            return f"goto {self.text}"
        return f"{self.kind}{target}"


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _split_enter(rest: str) -> tuple[str, bool]:
    """`"lamp" enter` -> (`"lamp"`, True)."""
    stripped = rest.rstrip()
    lowered = stripped.lower()
    for marker in (" enter", " [enter]", " <enter>"):
        if lowered.endswith(marker):
            return stripped[: -len(marker)], True
    return stripped, False


def _candidate_texts(raw: str) -> list[str]:
    """The text to parse: inside the last `<answer>` tags if any, else the text, then its last line."""
    found = last_answer(raw)
    text = (found if found is not None else raw).strip().strip("`").strip()
    candidates = [text]
    lines = [line.strip().strip("`").strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        candidates.append(lines[-1])
    return candidates


def parse(raw: str, *, allow_say: bool = False) -> WebAction:
    """The action `raw` names; `ActionError` (one line) when it names none."""
    problem = "empty action; " + HELP
    for text in _candidate_texts(raw):
        try:
            return _parse_one(text, allow_say)
        except ActionError as error:
            problem = str(error)
    raise ActionError(problem)


def _parse_one(text: str, allow_say: bool) -> WebAction:
    if not text:
        raise ActionError("empty action; " + HELP)
    if len(text) > 4 * MAX_TEXT:
        raise ActionError(f"the action is {len(text)} characters long; write one short action")
    match = _VERB.match(text)
    if match is None:
        raise ActionError(f"not an action: {text[:60]!r}; {HELP}")
    verb = match.group(1).lower()
    verb = _ALIASES.get(verb, verb)
    rest = match.group(2).strip()
    if verb == "say" and not allow_say:
        raise ActionError("there is nobody to talk to here; " + HELP)
    if verb not in KINDS:
        raise ActionError(f"unknown action {match.group(1)!r}; {HELP}")
    if verb == "back":
        return WebAction("back")
    if verb == "click":
        found = _ID_ONLY.match(rest)
        if found is None:
            raise ActionError("click needs an element id, e.g. click [12]")
        return WebAction("click", pid=int(found.group(1)))
    if verb in ("type", "select"):
        found = _ID_AND_TEXT.match(rest)
        if found is None:
            raise ActionError(f'{verb} needs an element id and text, e.g. {verb} [7] "text"')
        value, enter = _split_enter(found.group(2)) if verb == "type" else (found.group(2), False)
        value = _unquote(value).replace("\\n", "\n")
        if verb == "select" and not value:
            raise ActionError('select needs the option to choose, e.g. select [9] "Large"')
        if len(value) > MAX_TEXT:
            raise ActionError(f"at most {MAX_TEXT} characters can be typed at once")
        return WebAction(verb, pid=int(found.group(1)), text=value, enter=enter)
    if verb == "scroll":
        direction = rest.lower().strip()
        if direction in ("down", "up", ""):
            return WebAction("scroll", direction=direction or "down")
        found = _ID_ONLY.match(rest)
        if found is None:
            raise ActionError("scroll takes down, up, or an element id: scroll down, scroll [12]")
        return WebAction("scroll", pid=int(found.group(1)))
    if verb == "goto":
        target = _unquote(rest)
        if not target:
            raise ActionError("goto needs a path, e.g. goto /cart")
        return WebAction("goto", text=target)
    said = _unquote(rest)
    if len(said) > MAX_TEXT:
        raise ActionError(f"an {verb} is at most {MAX_TEXT} characters")
    if verb == "say" and not said:
        raise ActionError('say needs words, e.g. say "Which size do you want?"')
    return WebAction(verb, text=said)
