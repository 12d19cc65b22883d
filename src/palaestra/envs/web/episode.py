"""One site task being played in the browser: the site, its database, the page, the agent's turns.

Shared by the single-seat site env (`palaestra.envs.web.env.WebEnv`) and the conversational one
(`palaestra.envs.web.weblinx.WeblinxEnv`): `SiteEpisode` opens the task's site on a free port
with a fresh database, opens a page at the task's start, runs parsed actions in the browser,
observes the page after each and tells the agent what the action did. `Alignment` scores each
turn against the gold script the way WebLINX scores a turn (docs/references.md, WebLINX).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from palaestra.envs.web.actions import WebAction
from palaestra.envs.web.page import SELECTABLE_ROLES, TYPABLE_ROLES, PageState, page_text
from palaestra.envs.web.tasks import GoldScriptError, SiteTask, Step, normalize, resolve

SITE_TYPES = {
    "shop": "palaestra.envs.web.sites.shop:Shop",
    "forum": "palaestra.envs.web.sites.forum:Forum",
    "wiki": "palaestra.envs.web.sites.wiki:Wiki",
    "admin": "palaestra.envs.web.sites.admin:Admin",
}


def site_named(name: str) -> Any:
    """A site instance by its name (`shop`, ...)."""
    from palaestra.core.registries import load_target

    return load_target(SITE_TYPES[name])()


class RefusedAction(ValueError):
    """An action that could not run here (unknown element, wrong kind of element, off-site URL)."""


@dataclass
class Alignment:
    """WebLINX's turn-level scores, online: each agent turn against the next gold step not yet matched.

    WebLINX compares a model's action at each turn of a recorded demonstration with the
    demonstrator's: the intent (the action's kind), the element (there by the overlap of their
    boxes; here the same element id on the same page) and the text (typed, selected, said). In a
    live episode the agent's path may leave the script's, so each turn is compared with the first
    gold step not yet matched: a turn that matches it in full moves to the next one.
    """

    steps: tuple[Step, ...]
    pointer: int = 0
    turns: list[dict[str, Any]] = field(default_factory=list)

    def score(self, action: WebAction | None, page: PageState) -> None:
        """Score one turn (`action` None: the agent wrote no valid action)."""
        if self.pointer >= len(self.steps):
            reference = Step("answer")
        else:
            reference = self.steps[self.pointer]
        if action is None:
            self.turns.append({"reference": reference.kind, "intent": False, "element": None, "text": None})
            return
        intent = action.kind == reference.kind
        element: bool | None = None
        if reference.targets_element:
            try:
                element = intent and action.pid == resolve(reference, page)
            except GoldScriptError:
                element = False
        text: bool | None = None
        if reference.kind in ("type", "select", "goto", "say") or (
            reference.kind == "answer" and reference.text
        ):
            text = intent and _same_text(reference, action)
        self.turns.append({"reference": reference.kind, "intent": intent, "element": element, "text": text})
        if intent and element is not False and text is not False:
            self.pointer += 1

    def summary(self) -> dict[str, Any]:
        """Shares of turns: intent match, element accuracy (turns whose gold step names an element),
        text match (turns whose gold step has text); and how much of the script was matched."""
        turns = self.turns

        def share(key: str) -> float | None:
            scored = [turn[key] for turn in turns if turn[key] is not None]
            return sum(scored) / len(scored) if scored else None

        return {
            "turns": len(turns),
            "intent_match": share("intent"),
            "element_accuracy": share("element"),
            "text_match": share("text"),
            "gold_steps": len(self.steps),
            "gold_matched": min(self.pointer, len(self.steps)),
        }


def _same_text(reference: Step, action: WebAction) -> bool:
    if reference.kind == "say":  # an utterance need not be word for word: most of its words
        wanted = set(normalize(reference.text).split())
        said = set(normalize(action.text).split())
        return bool(wanted) and len(wanted & said) / len(wanted) >= 0.5
    return normalize(reference.text) == normalize(action.text)


class SiteEpisode:
    """A task's site (fresh database, own port) and a browser page on it."""

    def __init__(self, task: SiteTask, *, budget: int, screenshot_dir: str | None, label: str) -> None:
        from palaestra.envs.web.browser import shared_worker

        self.task = task
        self.budget = budget
        self.site = site_named(task.site)
        self.db = self.site.database()
        self.app, self.context = self.site.app(self.db, task.persona)
        self.worker = shared_worker()
        self.hosted: Any = None
        self.page_session: Any = None
        self.screenshots: list[str] = []
        self.screenshot_dir = Path(screenshot_dir) / label if screenshot_dir else None
        try:
            self.hosted = self.worker.host(self.app)
            self.page_session = self.worker.new_page()
            self.page_session.goto(self.hosted.origin + task.start)
            self.page = self.observe()
        except BaseException:
            self.close()
            raise

    def path_of(self, url: str) -> str:
        origin = self.hosted.origin
        return url[len(origin) :] or "/" if url.startswith(origin) else url

    def observe(self) -> PageState:
        report = self.page_session.observe()
        self.page = PageState.from_report(report, self.path_of(str(report.get("url") or "")))
        if self.screenshot_dir is not None:
            path = self.screenshot_dir / f"step{len(self.screenshots):03d}.png"
            self.page_session.screenshot(path)
            self.screenshots.append(str(path))
        return self.page

    def run(self, action: WebAction) -> str:
        """Run a browser action (not `answer` or `say`) and observe; what it did, in words.

        Raises `RefusedAction` (or the browser's `PageActionError`) with the reason, in one line.
        """
        before = self.page
        element = None
        if action.pid is not None:
            element = before.element(action.pid)
            if element is None:
                raise RefusedAction(
                    f"there is no element [{action.pid}] on this page; use the ids of the latest page"
                )
        if action.kind == "type" and element is not None and element.role not in TYPABLE_ROLES:
            raise RefusedAction(f"[{action.pid}] is a {element.role}, not a text field")
        if action.kind == "select" and element is not None and element.role not in SELECTABLE_ROLES:
            raise RefusedAction(f"[{action.pid}] is a {element.role}, not a select")
        url = action.text
        if action.kind == "goto":
            url = self._site_url(action.text)
        try:
            self.page_session.act(
                action.kind, action.pid, url, enter=action.enter, direction=action.direction
            )
        finally:
            after = self.observe()
        return _effect(before, after)

    def _site_url(self, target: str) -> str:
        origin = self.hosted.origin
        if target.startswith("/"):
            return origin + target
        if target.startswith(origin):
            return target
        raise RefusedAction("only this site's pages can be opened: give a path such as /cart")

    def view(self, query: str) -> str:
        """The page part of an observation: where the browser is and the elements shown."""
        text, _ = page_text(self.page, query, self.budget)
        title = f" · {self.page.title}" if self.page.title else ""
        return f"URL: {self.page.path}{title}\n{text}"

    def close(self) -> None:
        if self.page_session is not None:
            self.page_session.close()
            self.page_session = None
        if self.hosted is not None:
            self.hosted.close()
            self.hosted = None
        self.db.close()


def _effect(before: PageState, after: PageState) -> str:
    if after.path != before.path:
        return f"now at {after.path}"
    if [e.line() for e in after.elements] != [e.line() for e in before.elements]:
        return "the page changed"
    if after.scroll != before.scroll:
        return f"scrolled to {after.scroll}%"
    return "no visible change"
