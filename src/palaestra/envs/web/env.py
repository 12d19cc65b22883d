"""`WebEnv` (`web-v0`): an agent does a task on a self-hosted site in a real browser.

One seat, `agent`. At reset the env serves the task's site (a fresh SQLite database, a free
127.0.0.1 port), opens a page at the task's start in the process's headless Chromium
(`palaestra.envs.web.browser`) and shows the agent the task and the page: its path, title and
elements, ranked and cut to `budget` characters (`palaestra.envs.web.page`). Each turn the agent
writes one action (`palaestra.envs.web.actions`); the env runs it, observes the page again and
says what the action did. A bad action (unparsable, an element that is not on the page, a field
that is not a field, a path off the site) is refused with the reason, as an observation: the
agent acts again. `answer "..."` ends the episode; so does reaching `max_steps` (truncated).

The task is then graded (`palaestra.envs.web.tasks.grade`): its database checks and, for
information tasks, the answer. The agent's reward is 1.0 or 0.0 and `info` holds the verdict,
the answer, the turn-level alignment with the gold script (`episode.Alignment`) and, with
`screenshot_dir`, the screenshot taken after every observation.

Tasks come from the reset seed (`seed` mod the pool, in task order) or `task=ID`; the pool is
every site's tasks, or `site=NAME`'s, within `split=train|test` if given. Scripted seats read
the task through `privileged_view`, a `WebView`: the gold script's player reads the live page.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep, action_text
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.envs.web.actions import HELP, ActionError, WebAction, parse
from palaestra.envs.web.browser import PageActionError
from palaestra.envs.web.episode import Alignment, RefusedAction, SiteEpisode
from palaestra.envs.web.page import CONTROL_ROLES, PageState
from palaestra.envs.web.tasks import GoldPlayer, SiteTask, grade

AGENT: PlayerId = "agent"
_MAX_ECHO = 300
RULES = (
    "You are operating a web browser to do a task on a website. Each turn you see the task, the "
    "page's address and its elements, one per line: [id] role \"name\" and the element's state. "
    "Answer with exactly one action per turn.\n" + HELP + "\n"
    "Element ids belong to the page you were shown last. When the task asks for information, "
    'give it with answer "..."; when it asks you to change something, do it, then answer.'
)


@dataclass
class _Play:
    """What one episode has done so far."""

    task: SiteTask
    seed: int
    site: SiteEpisode
    alignment: Alignment
    steps: int = 0
    errors: int = 0
    last: str = "the page opened"
    answer: str | None = None
    done: bool = False
    termination: str = ""
    final_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebView:
    """What scripted seats of a web env may read (`privileged_view`).

    Fields:
        env_name: the env's registry id.
        task: the episode's task (intent, gold script, checks).
        page: the page as last observed, every element included (never pruned).
    Methods:
        gold(): a fresh player of the task's gold script (`tasks.GoldPlayer`).
    """

    env_name: str
    task: SiteTask
    page: PageState

    def gold(self) -> GoldPlayer:
        return GoldPlayer(self.task.gold)


def task_pool(site: str | None = None, split: str | None = None) -> list[SiteTask]:
    """The site tasks, in order, of one site and split if given."""
    from palaestra.envs.web.catalog import all_tasks

    pool = [
        t for t in all_tasks() if (site is None or t.site == site) and (split is None or t.split == split)
    ]
    if not pool:
        raise EnvError(f"no web tasks for site={site!r} split={split!r}; sites: shop, forum, wiki, admin")
    return pool


def find_task(task_id: str) -> SiteTask:
    from palaestra.envs.web.catalog import all_tasks

    for task in all_tasks():
        if task.id == task_id:
            return task
    raise EnvError(f"unknown web task {task_id!r}; see `palaestra validate web -v` for the task ids")


class WebEnv:
    """A site task in a real browser (see the module docstring).

    Args:
        site: draw tasks of this site only (`shop`, `forum`, `wiki`, `admin`).
        task: play this task id whatever the seed.
        split: draw tasks of this split only (`train`, `test`).
        max_steps: agent turns before the episode is truncated (and graded as it stands).
        budget: characters of page elements an observation may show (0: the whole page).
        screenshot_dir: save a PNG after every observation under this folder (one subfolder
            per episode, named by task and seed); their paths are in `info["screenshots"]`.
    """

    players: tuple[PlayerId, ...] = (AGENT,)

    def __init__(
        self,
        site: str | None = None,
        *,
        task: str | None = None,
        split: str | None = None,
        max_steps: int = 30,
        budget: int = 6000,
        screenshot_dir: str | None = None,
    ) -> None:
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise EnvError(f"max_steps must be a positive integer, got {max_steps!r}")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise EnvError(f"budget must be a whole number of characters (0: no limit), got {budget!r}")
        self.spec: EnvSpec | None = None
        self.site = site
        self.split = split
        self.task_id = task
        self.pool = [find_task(task)] if task is not None else task_pool(site, split)
        self.max_steps = max_steps
        self.budget = budget
        self.screenshot_dir = screenshot_dir
        self._play: _Play | None = None

    # ----- Env API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        unknown = set(options or {}) - {"task"}
        if unknown:
            raise EnvError(f"web env reset options are task; got {', '.join(sorted(unknown))}")
        task_id = (options or {}).get("task")
        task = find_task(str(task_id)) if task_id is not None else self.pool[(seed or 0) % len(self.pool)]
        self._close_play()
        label = f"{task.id}-seed{seed or 0}"
        site = SiteEpisode(task, budget=self.budget, screenshot_dir=self.screenshot_dir, label=label)
        self._play = _Play(task=task, seed=seed or 0, site=site, alignment=Alignment(task.gold))
        rules = Message(role="system", content=RULES)
        return TimeStep(to_act=(AGENT,), observations={AGENT: [rules, self._observation(self._play)]})

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        play = self._current()
        if play.done:
            raise ValueError("web env: the episode is over; call reset() first")
        if set(actions) != {AGENT}:
            raise ValueError(f"web env: expected an action from {AGENT!r} only, got {sorted(actions)}")
        raw = action_text(actions[AGENT])
        play.steps += 1
        refused: tuple[InvalidAction, ...] = ()
        try:
            action = parse(raw)
        except ActionError as error:
            play.alignment.score(None, play.site.page)
            refused = self._refuse(play, raw, str(error))
        else:
            play.alignment.score(action, play.site.page)
            refused = self._apply(play, raw, action)
        if not play.done and play.steps >= self.max_steps:
            self._finish(play, "max_steps")
        if play.done:
            return TimeStep(
                to_act=(),
                observations={AGENT: [self._observation(play)]},
                rewards={AGENT: play.final_info["reward"]},
                terminated=play.termination != "max_steps",
                truncated=play.termination == "max_steps",
                info=dict(play.final_info),
                invalid_actions=refused,
            )
        return TimeStep(
            to_act=(AGENT,), observations={AGENT: [self._observation(play)]}, invalid_actions=refused
        )

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        return None

    def render(self) -> str:
        play = self._current()
        return (
            f"web task {play.task.id} [{play.task.site}, {play.task.split}] step {play.steps}\n"
            f"Task: {play.task.intent}\nLast action: {play.last}\n{play.site.view(play.task.intent)}"
        )

    def close(self) -> None:
        self._close_play()

    def privileged_view(self, player: PlayerId) -> WebView:
        play = self._current()
        name = str(self.spec.id) if self.spec is not None else type(self).__name__
        return WebView(name, play.task, play.site.page)

    @property
    def task(self) -> SiteTask:
        return self._current().task

    @property
    def page(self) -> PageState:
        return self._current().site.page

    def state_hash(self) -> str:
        play = self._current()
        summary = json.dumps(
            [play.task.id, play.steps, play.answer, play.done, [e.line() for e in play.site.page.elements]]
        )
        return hashlib.sha256(summary.encode()).hexdigest()

    def sample_action(self, player: PlayerId, rng: random.Random) -> Action:
        """A random action for conformance checks; a quarter of them end the episode."""
        draw = rng.random()
        controls = [e for e in self._current().site.page.elements if e.role in CONTROL_ROLES]
        if draw < 0.25 or not controls:
            return "answer"
        if draw < 0.35:
            return "click [99999]"
        return f"click [{rng.choice(controls).pid}]"

    # ----- internals ---------------------------------------------------------------------------
    def _current(self) -> _Play:
        if self._play is None:
            raise ValueError("web env: call reset() before using the episode")
        return self._play

    def _close_play(self) -> None:
        if self._play is not None:
            self._play.site.close()
            self._play = None

    def _apply(self, play: _Play, raw: str, action: WebAction) -> tuple[InvalidAction, ...]:
        if action.kind == "say":
            return self._refuse(play, raw, "there is nobody to talk to here; " + HELP)
        if action.kind == "answer":
            play.answer = action.text
            play.last = f"{action} -> the episode ends"
            self._finish(play, "answered")
            return ()
        try:
            effect = play.site.run(action)
        except (RefusedAction, PageActionError) as error:
            return self._refuse(play, raw, str(error))
        play.last = f"{action} -> {effect}"
        return ()

    def _refuse(self, play: _Play, raw: str, reason: str) -> tuple[InvalidAction, ...]:
        play.errors += 1
        play.last = f"refused ({reason})"
        return (InvalidAction(player=AGENT, action=raw[:_MAX_ECHO], reason=reason, outcome="retry"),)

    def _observation(self, play: _Play) -> Message:
        query = f"{play.task.intent} {play.last}"
        lines = [f"Task: {play.task.intent}", f"Last action: {play.last}", play.site.view(query)]
        if play.done:
            lines.append(f"The episode is over ({play.termination}).")
        return Message(role="user", content="\n".join(lines))

    def _finish(self, play: _Play, termination: str) -> None:
        play.done = True
        play.termination = termination
        verdict = grade(play.task, play.site.db, play.answer)
        play.final_info = {
            "task_id": play.task.id,
            "site": play.task.site,
            "kind": play.task.kind,
            "split": play.task.split,
            "termination": termination,
            "reward": verdict.reward,
            "grade": verdict.to_dict(),
            "answer": play.answer,
            "steps": play.steps,
            "errors": play.errors,
            "final_path": play.site.page.path,
            "alignment": play.alignment.summary(),
        }
        if play.site.screenshots:
            play.final_info["screenshots"] = list(play.site.screenshots)
