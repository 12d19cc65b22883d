"""MiniWoB++ (`miniwob-v0`, `miniwob:TASK`): the benchmark's own task pages, through the same browser.

The `miniwob` package ships MiniWoB++'s 130 task pages (`miniwob/html/miniwob/*.html`) and the
JavaScript that generates each problem and computes its reward (`core/core.js`). This env opens a
task page from the package in the process's Chromium (`palaestra.envs.web.browser`), seeds it and
starts an episode the way the package's own Selenium driver does (docs/references.md §12:
`Math.seedrandom(seed)`, `core.setDataMode`, `core.startEpisodeReal()`), and shows the agent the
task's instruction (`core.getUtterance()`) and the page's elements (the benchmark's own score
board left out), with the same
observation and actions as `web-v0` (`goto` and `back` excepted: a task is one page).

The episode ends when the task's own script ends it (`WOB_DONE_GLOBAL`); the reward is the
task's (`reward`):
    raw        WOB_RAW_REWARD_GLOBAL: the task's reward without the time penalty (default)
    original   WOB_REWARD_GLOBAL: the benchmark's reward, scaled by the time left
    binary     1 when the raw reward is 1, else -1 (the package's `get_binary_reward`)
MiniWoB++ ends an episode after 10 s of wall-clock time; an agent that thinks for longer would
always lose, so the limit is `time_limit_s` (default: none, the raw reward does not depend on
it). Stopping (`answer`) or reaching `max_steps` before the task ends scores -1, the
benchmark's reward for running out of time.

`miniwob-v0` draws from `TASKS`, DOM tasks our actions can do (no dragging, drawing or canvas);
`miniwob:TASK` plays any page by name. `SOLVERS` holds scripted solutions for some of them,
which `palaestra validate web:miniwob` plays (they must score 1.0; doing nothing must not).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep, action_text
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.envs.web.actions import HELP, ActionError, WebAction, parse
from palaestra.envs.web.browser import INSTALL_HINT, PageActionError
from palaestra.envs.web.page import SELECTABLE_ROLES, TYPABLE_ROLES, PageState, page_text

AGENT: PlayerId = "agent"
REWARDS = ("raw", "original", "binary")
TASKS = (
    "click-test",
    "click-test-2",
    "click-button",
    "click-link",
    "click-dialog",
    "click-tab",
    "click-option",
    "click-checkboxes",
    "click-button-sequence",
    "focus-text",
    "focus-text-2",
    "enter-text",
    "enter-text-2",
    "enter-password",
    "login-user",
    "choose-list",
    "click-collapsible",
    "click-widget",
    "navigate-tree",
    "use-autocomplete",
)
"""The tasks `miniwob-v0` draws from (seed mod the list)."""
RULES = (
    "You are using a web page with a small task on it. Each turn you see the task, the page's "
    'elements, one per line: [id] role "name", and what your last action did. Answer with '
    "exactly one action per turn.\n" + HELP.replace(" | goto /path | back", "")
)
READY_JS = "() => typeof core !== 'undefined' && typeof genProblem !== 'undefined'"
STATE_JS = (
    "() => ({done: WOB_DONE_GLOBAL, reward: WOB_REWARD_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL, "
    "reason: WOB_REWARD_REASON === null ? null : String(WOB_REWARD_REASON), ready: WOB_TASK_READY})"
)


def html_dir() -> Path:
    """The folder of MiniWoB++'s task pages inside the installed `miniwob` package."""
    try:
        import miniwob
    except ModuleNotFoundError as exc:
        raise EnvError(f"MiniWoB++ tasks need the miniwob package: {INSTALL_HINT}") from exc
    return Path(miniwob.__file__).parent / "html" / "miniwob"


def available_tasks() -> list[str]:
    return sorted(path.stem for path in html_dir().glob("*.html"))


@dataclass
class _Episode:
    task: str
    seed: int
    page: PageState
    utterance: str
    steps: int = 0
    errors: int = 0
    last: str = "the task started"
    done: bool = False
    final_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MiniWobView:
    """What scripted seats read (`privileged_view`): the task, its instruction, the live page.

    `gold()`: the task's scripted solver (`SOLVERS`), fed the live page each turn.
    """

    env_name: str
    task: str
    utterance: str
    page: PageState

    def gold(self) -> Any:
        if self.task not in SOLVERS:
            raise EnvError(
                f"no scripted solver for MiniWoB++ task {self.task}; solvers: {', '.join(SOLVERS)}"
            )
        return ScriptedSolver(SOLVERS[self.task], self.utterance)


class MiniWobEnv:
    """A MiniWoB++ task page in Chromium (see the module docstring).

    Args:
        task: the task's name (`click-button`); None: draw from `TASKS` by seed.
        reward: `raw`, `original` or `binary`.
        max_steps: agent turns before the episode ends unfinished (reward -1).
        time_limit_s: MiniWoB++'s wall-clock limit per episode (None: no limit).
        mode: the task's data mode, `train` or `test` (the package's `setDataMode`).
        budget: characters of page elements an observation may show (0: no limit).
    """

    players: tuple[PlayerId, ...] = (AGENT,)

    def __init__(
        self,
        task: str | None = None,
        *,
        reward: str = "raw",
        max_steps: int = 12,
        time_limit_s: float | None = None,
        mode: str = "train",
        budget: int = 4000,
    ) -> None:
        if task is not None and not (html_dir() / f"{task}.html").is_file():
            names = available_tasks()
            from palaestra.core.registry import did_you_mean

            raise EnvError(f"unknown MiniWoB++ task {task!r}{did_you_mean(task, names)}; {len(names)} tasks")
        if reward not in REWARDS:
            raise EnvError(f"miniwob reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise EnvError(f"max_steps must be a positive integer, got {max_steps!r}")
        if mode not in ("train", "test"):
            raise EnvError(f"miniwob mode must be train or test, got {mode!r}")
        self.spec: EnvSpec | None = None
        self.task = task
        self.reward = reward
        self.max_steps = max_steps
        self.time_limit_s = time_limit_s
        self.mode = mode
        self.budget = budget
        self._session: Any = None
        self._episode: _Episode | None = None

    # ----- Env API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        if options:
            raise EnvError(f"miniwob env takes no reset options; got {', '.join(sorted(options))}")
        from palaestra.envs.web.browser import shared_worker

        task = self.task or TASKS[(seed or 0) % len(TASKS)]
        self.close()
        self._session = shared_worker().new_page(viewport=(500, 400))
        session = self._session
        session.goto((html_dir() / f"{task}.html").as_uri())
        limit_ms = int(self.time_limit_s * 1000) if self.time_limit_s else 24 * 3600 * 1000
        session.evaluate(
            "([seed, limit, mode]) => { Math.seedrandom(seed); core.EPISODE_MAX_TIME = limit; "
            "core.setDataMode(mode); core.startEpisodeReal(); }",
            [seed or 0, limit_ms, self.mode],
        )
        utterance = str(session.evaluate("() => core.getUtterance()"))
        self._episode = _Episode(task=task, seed=seed or 0, page=self._observe(), utterance=utterance)
        rules = Message(role="system", content=RULES)
        return TimeStep(to_act=(AGENT,), observations={AGENT: [rules, self._observation(self._episode)]})

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        episode = self._current()
        if episode.done:
            raise ValueError("miniwob env: the episode is over; call reset() first")
        if set(actions) != {AGENT}:
            raise ValueError(f"miniwob env: expected an action from {AGENT!r} only, got {sorted(actions)}")
        raw = action_text(actions[AGENT])
        episode.steps += 1
        refused: tuple[InvalidAction, ...] = ()
        gave_up = False
        try:
            action = parse(raw)
            if action.kind in ("goto", "back", "say"):
                raise ActionError(f"{action.kind} is not available here: the task is this one page")
        except ActionError as error:
            refused = self._refuse(episode, raw, str(error))
        else:
            if action.kind == "answer":
                gave_up = True
                episode.last = "stopped before the task ended"
            else:
                refused = self._run(episode, raw, action)
        state = self._session.evaluate(STATE_JS)
        if state["done"] or gave_up or episode.steps >= self.max_steps:
            self._finish(episode, state)
            return TimeStep(
                to_act=(),
                observations={AGENT: [self._observation(episode)]},
                rewards={AGENT: episode.final_info["reward"]},
                terminated=bool(state["done"]) or gave_up,
                truncated=not (state["done"] or gave_up),
                info=dict(episode.final_info),
                invalid_actions=refused,
            )
        return TimeStep(
            to_act=(AGENT,), observations={AGENT: [self._observation(episode)]}, invalid_actions=refused
        )

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        return None

    def render(self) -> str:
        episode = self._current()
        text, _ = page_text(episode.page, episode.utterance, 0)
        return f"miniwob {episode.task} seed {episode.seed} step {episode.steps}\n{episode.utterance}\n{text}"

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def privileged_view(self, player: PlayerId) -> MiniWobView:
        episode = self._current()
        name = str(self.spec.id) if self.spec is not None else type(self).__name__
        return MiniWobView(name, episode.task, episode.utterance, episode.page)

    @property
    def page(self) -> PageState:
        return self._current().page

    def sample_action(self, player: PlayerId, rng: Any) -> Action:
        """A random action for conformance checks: clicks, a quarter of them stops."""
        elements = self._current().page.elements
        if rng.random() < 0.25 or not elements:
            return "answer"
        return f"click [{rng.choice(elements).pid}]"

    # ----- internals ---------------------------------------------------------------------------
    def _current(self) -> _Episode:
        if self._episode is None:
            raise ValueError("miniwob env: call reset() before using the episode")
        return self._episode

    def _observe(self) -> PageState:
        # The whole body (dialogs are appended to it, outside #wrap), without the instruction
        # (shown as the task) and the benchmark's own score board.
        report = self._session.observe(skip="#query, #reward-display, #sync-task-cover, #click-canvas")
        return PageState.from_report(report, "")

    def _run(self, episode: _Episode, raw: str, action: WebAction) -> tuple[InvalidAction, ...]:
        element = episode.page.element(action.pid) if action.pid is not None else None
        if action.pid is not None and element is None:
            return self._refuse(
                episode, raw, f"there is no element [{action.pid}]; use the ids of the latest page"
            )
        if action.kind == "type" and element is not None and element.role not in TYPABLE_ROLES:
            return self._refuse(episode, raw, f"[{action.pid}] is a {element.role}, not a text field")
        if action.kind == "select" and element is not None and element.role not in SELECTABLE_ROLES:
            return self._refuse(episode, raw, f"[{action.pid}] is a {element.role}, not a select")
        try:
            self._session.act(
                action.kind, action.pid, action.text, enter=action.enter, direction=action.direction
            )
        except PageActionError as error:
            episode.page = self._observe()
            return self._refuse(episode, raw, str(error))
        episode.page = self._observe()
        episode.last = f"{action} -> done"
        return ()

    def _refuse(self, episode: _Episode, raw: str, reason: str) -> tuple[InvalidAction, ...]:
        episode.errors += 1
        episode.last = f"refused ({reason})"
        return (InvalidAction(player=AGENT, action=raw[:300], reason=reason, outcome="retry"),)

    def _observation(self, episode: _Episode) -> Message:
        text, _ = page_text(episode.page, episode.utterance, self.budget)
        lines = [f"Task: {episode.utterance}", f"Last action: {episode.last}", text]
        if episode.done:
            lines.append(f"The episode is over (reward {episode.final_info['reward']:g}).")
        return Message(role="user", content="\n".join(lines))

    def _finish(self, episode: _Episode, state: Mapping[str, Any]) -> None:
        episode.done = True
        finished = bool(state["done"])
        raw = float(state["raw"]) if finished else -1.0
        original = float(state["reward"]) if finished else -1.0
        reward = {"raw": raw, "original": original, "binary": 1.0 if raw >= 1.0 else -1.0}[self.reward]
        episode.final_info = {
            "task_id": episode.task,
            "utterance": episode.utterance,
            "reward": reward,
            "raw_reward": raw,
            "original_reward": original,
            "reason": state.get("reason"),
            "finished": finished,
            "steps": episode.steps,
            "errors": episode.errors,
        }


# ----- scripted solvers ---------------------------------------------------------------------------
Solver = Callable[[str, PageState, int], str]
"""(the task's instruction, the live page, the step number from 0) -> the next action."""
_QUOTED = re.compile(r'"([^"]*)"')


def _one(page: PageState, role: str | None, name: str) -> int:
    found = page.find(role, name)
    if not found:
        found = [
            e for e in page.elements if (role is None or e.role == role) and e.name.strip() == name.strip()
        ]
    if len(found) != 1:
        raise EnvError(f"solver: {len(found)} elements {role} {name!r} on the page")
    return found[0].pid


def _first(page: PageState, role: str, name: str) -> int:
    found = [e for e in page.elements if e.role == role and e.name.strip() == name.strip()]
    if not found:
        raise EnvError(f"solver: no {role} {name!r} on the page")
    return found[0].pid


def _submit(page: PageState) -> str:
    return f"click [{_one(page, 'button', 'Submit')}]"


def _click_button(utterance: str, page: PageState, step: int) -> str:
    # Two buttons may carry the wanted text; either is right (the task compares the text).
    wanted = _QUOTED.findall(utterance)[0]
    return f"click [{_first(page, 'button', wanted)}]"


def _click_named_button(utterance: str, page: PageState, step: int) -> str:
    found = re.search(r"button (\w+)", utterance)
    return f"click [{_one(page, 'button', found.group(1) if found else '')}]"


def _click_link(utterance: str, page: PageState, step: int) -> str:
    return f"click [{_first(page, 'clickable', _QUOTED.findall(utterance)[0])}]"


def _click_test(utterance: str, page: PageState, step: int) -> str:
    name = "Click Me!" if "Click Me!" in [e.name for e in page.elements] else _QUOTED.findall(utterance)[0]
    return f"click [{_one(page, 'button', name)}]"


def _enter_text(utterance: str, page: PageState, step: int) -> str:
    wanted = _QUOTED.findall(utterance)[0]
    if step == 0:
        if "lower case" in utterance:
            wanted = wanted.lower()
        elif "upper case" in utterance:
            wanted = wanted.upper()
        field = next(e for e in page.elements if e.role == "textbox")
        return f'type [{field.pid}] "{wanted}"'
    return _submit(page)


def _enter_password(utterance: str, page: PageState, step: int) -> str:
    wanted = _QUOTED.findall(utterance)[0]
    fields = [e for e in page.elements if e.role == "textbox"]
    if step < len(fields):
        return f'type [{fields[step].pid}] "{wanted}"'
    return _submit(page)


def _login_user(utterance: str, page: PageState, step: int) -> str:
    user, password = _QUOTED.findall(utterance)[:2]
    fields = [e for e in page.elements if e.role == "textbox"]
    if step < 2:
        return f'type [{fields[step].pid}] "{(user, password)[step]}"'
    return f"click [{_one(page, 'button', 'Login')}]"


def _focus_text(utterance: str, page: PageState, step: int) -> str:
    fields = [e for e in page.elements if e.role == "textbox"]
    ordinal = {"1st": 0, "2nd": 1, "3rd": 2}
    found = re.search(r"(\d)(?:st|nd|rd|th)", utterance)
    index = int(found.group(1)) - 1 if found else 0
    return f"click [{fields[ordinal.get(found.group(0), index) if found else 0].pid}]"


def _choose_list(utterance: str, page: PageState, step: int) -> str:
    wanted = re.search(r"Select (.+) from the list", utterance)
    if step == 0 and wanted:
        field = next(e for e in page.elements if e.role == "combobox")
        return f'select [{field.pid}] "{wanted.group(1)}"'
    return _submit(page)


def _click_checkboxes(utterance: str, page: PageState, step: int) -> str:
    found = re.search(r"Select (.*) and click Submit", utterance)
    words = (
        [] if found is None or found.group(1) == "nothing" else [w.strip() for w in found.group(1).split(",")]
    )
    boxes = [e for e in page.elements if e.role == "checkbox"]
    todo = [box for box in boxes if (box.name in words) != bool(box.checked)]
    return f"click [{todo[0].pid}]" if todo else _submit(page)


def _click_option(utterance: str, page: PageState, step: int) -> str:
    found = re.search(r"Select (.*) and click Submit", utterance)
    wanted = found.group(1) if found else ""
    radios = [e for e in page.elements if e.role == "radio" and e.name == wanted and not e.checked]
    return f"click [{radios[0].pid}]" if radios else _submit(page)


def _click_button_sequence(utterance: str, page: PageState, step: int) -> str:
    return f"click [{_one(page, 'button', ('ONE', 'TWO')[min(step, 1)])}]"


def _click_dialog(utterance: str, page: PageState, step: int) -> str:
    close = [e for e in page.elements if e.role == "button" and e.name.lower() in ("close", "×", "x")]
    return f"click [{close[0].pid}]" if close else "answer"


def _click_tab(utterance: str, page: PageState, step: int) -> str:
    number = re.search(r"Tab #(\d)", utterance)
    return f"click [{_one(page, 'tab', f'Tab #{number.group(1) if number else 1}')}]"


SOLVERS: dict[str, Solver] = {
    "click-test": _click_test,
    "click-test-2": _click_named_button,
    "click-button": _click_button,
    "click-link": _click_link,
    "click-dialog": _click_dialog,
    "click-tab": _click_tab,
    "click-option": _click_option,
    "click-checkboxes": _click_checkboxes,
    "click-button-sequence": _click_button_sequence,
    "focus-text": _focus_text,
    "focus-text-2": _focus_text,
    "enter-text": _enter_text,
    "enter-password": _enter_password,
    "login-user": _login_user,
    "choose-list": _choose_list,
}
"""Scripted solutions of some `TASKS` (what `web_gold` plays on them)."""


class ScriptedSolver:
    """Plays a `Solver` one action per call."""

    def __init__(self, solver: Solver, utterance: str) -> None:
        self.solver = solver
        self.utterance = utterance
        self.step = 0

    def act(self, page: PageState) -> str:
        action = self.solver(self.utterance, page, self.step)
        self.step += 1
        return action


def validate_miniwob(tasks: Sequence[str] | None, seeds: Sequence[int] = (0, 1, 2)) -> Any:
    """`palaestra validate web:miniwob`: each solver scores the task's full raw reward on three
    seeds, and stopping at once does not."""
    from palaestra.core.validation import ValidationCheck, ValidationReport

    checks = []
    for task in [name for name in SOLVERS if not tasks or name in tasks]:
        env = MiniWobEnv(task)
        golds, nulls = [], []
        problems = []
        try:
            for seed in seeds:
                env.reset(seed=seed)
                solver = env.privileged_view(AGENT).gold()
                step = None
                try:
                    while step is None or not step.done:
                        step = env.step({AGENT: solver.act(env.page)})
                    golds.append(float(step.rewards[AGENT]))
                except (EnvError, IndexError, StopIteration, AttributeError) as error:
                    problems.append(f"seed {seed}: the solver failed ({type(error).__name__}: {error})")
                    golds.append(0.0)
                env.reset(seed=seed)
                nulls.append(float(env.step({AGENT: "answer"}).rewards[AGENT]))
        finally:
            env.close()
        check = ValidationCheck(task, "miniwob", gold=min(golds), null=max(nulls), problems=problems)
        if min(golds) < 1.0:
            check.problems.append(f"the solver scored {golds} on seeds {list(seeds)}")
        if max(nulls) >= 1.0:
            check.problems.append("stopping at once scored 1.0")
        checks.append(check)
    return ValidationReport(target="web:miniwob", checks=checks)
