"""`WeblinxEnv` (`weblinx-v0`): conversational web navigation, WebLINX-style.

Two seats. The `instructor` (the scripted instructor, `web_instructor`, or any agent) knows the
task and gives it over several turns; the `navigator` browses the task's site in Chromium and
may talk back (`say "..."`), to ask a question or for the next instruction. As in WebLINX
(docs/references.md, WebLINX), the navigator sees the dialogue so far with the page, pruned and
ranked against the latest instructions (`palaestra.envs.web.page`).

Turns: the instructor speaks first; the navigator then acts until it says something (the
instructor answers) or answers (`answer "..."`, which ends the episode). Browser actions and
refusals are as in `web-v0` (`palaestra.envs.web.env`). The episode is truncated after
`max_steps` navigator turns or `max_utterances` instructor turns.

Tasks are the site tasks (`palaestra.envs.web.tasks`); those with `turns` are said in those
pieces, the others whole. The scripted instructor (`Instructor`) says the pieces in order, one
each time the navigator speaks, and answers a question with a task fact when the question names
the fact's keyword. The gold navigator asks for every piece first, then plays the task's gold
script.

At the end both seats get the task's reward (the task is theirs together; the scorecard scores
the navigator) and `info["weblinx"]` holds WebLINX's turn-level scores of the navigator
(`episode.Alignment`: intent match, element accuracy, text match) with the dialogue's counts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep, action_text
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.envs.web.actions import HELP, SAY_HELP, ActionError, WebAction, parse
from palaestra.envs.web.browser import PageActionError
from palaestra.envs.web.env import find_task, task_pool
from palaestra.envs.web.episode import Alignment, RefusedAction, SiteEpisode
from palaestra.envs.web.page import CONTROL_ROLES, PageState
from palaestra.envs.web.tasks import GoldPlayer, SiteTask, Step, grade, say

NAVIGATOR: PlayerId = "navigator"
INSTRUCTOR: PlayerId = "instructor"
ASK_NEXT = "Got it. What should I do next?"
DONE_TEXT = "That's everything, thank you!"
_MAX_ECHO = 300
_MAX_UTTERANCE = 1000
NAVIGATOR_RULES = (
    "You are a web navigator helping an instructor who tells you, over several messages, what to "
    "do on a website. Each turn you see what the instructor said, the page's address and its "
    'elements, one per line: [id] role "name". Answer with exactly one action per turn.\n'
    + HELP
    + SAY_HELP
    + "\nSay something to ask a question or for the next instruction. When everything asked is "
    'done, end with answer (and the information, if you were asked for some: answer "...").'
)


def instructor_brief(task: SiteTask) -> str:
    pieces = "\n".join(f"- {piece}" for piece in task.utterances())
    return (
        "You are the instructor. You want a navigator to do this on a website for you: "
        f"{task.intent}\nTell it what to do one step at a time, in plain words, and answer its "
        f"questions. You could say it in these pieces:\n{pieces}"
    )


class Instructor:
    """The scripted instructor: the task's pieces in order, facts for questions naming them."""

    def __init__(self, task: SiteTask) -> None:
        self.task = task
        self.said = 0

    def act(self, messages: Sequence[Message]) -> str:
        heard = next((m.content or "" for m in reversed(messages) if m.name == NAVIGATOR), "")
        lowered = heard.lower()
        if "?" in heard and self.said:
            for keyword, fact in self.task.facts.items():
                if re.search(rf"\b{re.escape(keyword.lower())}\b", lowered):
                    return fact
        pieces = self.task.utterances()
        if self.said < len(pieces):
            self.said += 1
            return pieces[self.said - 1]
        return DONE_TEXT


def navigator_script(task: SiteTask) -> tuple[Step, ...]:
    """The gold navigator: ask for each piece after the first, then the task's gold script."""
    return (*(say(ASK_NEXT) for _ in task.utterances()[1:]), *task.gold)


@dataclass(frozen=True, slots=True)
class WeblinxView:
    """What scripted seats read (`privileged_view`): the task and the live page.

    Methods: `gold()` (the navigator's gold script), `instructor()` (the scripted instructor).
    """

    env_name: str
    task: SiteTask
    page: PageState

    def gold(self) -> GoldPlayer:
        return GoldPlayer(navigator_script(self.task))

    def instructor(self) -> Instructor:
        return Instructor(self.task)


@dataclass
class _Dialogue:
    task: SiteTask
    site: SiteEpisode
    alignment: Alignment
    to_act: PlayerId = INSTRUCTOR
    turns: list[tuple[str, str]] = field(default_factory=list)
    navigator_steps: int = 0
    utterances: int = 0
    questions: int = 0
    errors: int = 0
    last: str = "the page opened"
    answer: str | None = None
    done: bool = False
    termination: str = ""
    final_info: dict[str, Any] = field(default_factory=dict)


class WeblinxEnv:
    """Conversational navigation over the site tasks (see the module docstring).

    Args:
        site, task, split: which tasks to draw (as `web-v0`).
        conversational_only: draw only tasks written as several pieces (`SiteTask.turns`).
        max_steps: navigator turns before the episode is truncated.
        max_utterances: instructor turns before the episode is truncated.
        budget: characters of page elements an observation may show (0: no limit).
        history: instructor utterances shown with each observation (the latest ones).
        screenshot_dir: as `web-v0`.
    """

    players: tuple[PlayerId, ...] = (NAVIGATOR, INSTRUCTOR)

    def __init__(
        self,
        site: str | None = None,
        *,
        task: str | None = None,
        split: str | None = None,
        conversational_only: bool = True,
        max_steps: int = 30,
        max_utterances: int = 10,
        budget: int = 6000,
        history: int = 4,
        screenshot_dir: str | None = None,
    ) -> None:
        for label, value in (
            ("max_steps", max_steps),
            ("max_utterances", max_utterances),
            ("history", history),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EnvError(f"{label} must be a positive integer, got {value!r}")
        self.spec: EnvSpec | None = None
        if task is not None:
            self.pool = [find_task(task)]
        else:
            self.pool = [t for t in task_pool(site, split) if t.turns or not conversational_only]
            if not self.pool:
                raise EnvError(f"no conversational web tasks for site={site!r} split={split!r}")
        self.max_steps = max_steps
        self.max_utterances = max_utterances
        self.budget = budget
        self.history = history
        self.screenshot_dir = screenshot_dir
        self._dialogue: _Dialogue | None = None

    # ----- Env API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        if options:
            raise EnvError(f"weblinx env takes no reset options; got {', '.join(sorted(options))}")
        task = self.pool[(seed or 0) % len(self.pool)]
        self.close()
        site = SiteEpisode(
            task, budget=self.budget, screenshot_dir=self.screenshot_dir, label=f"{task.id}-seed{seed or 0}"
        )
        self._dialogue = _Dialogue(task=task, site=site, alignment=Alignment(navigator_script(task)))
        brief = Message(role="system", content=instructor_brief(task))
        ready = Message(
            role="user", content="The navigator is ready. Say your first instruction.", name="env"
        )
        return TimeStep(to_act=(INSTRUCTOR,), observations={INSTRUCTOR: [brief, ready]})

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        dialogue = self._current()
        if dialogue.done:
            raise ValueError("weblinx env: the episode is over; call reset() first")
        actor = dialogue.to_act
        if set(actions) != {actor}:
            raise ValueError(f"weblinx env: expected an action from {actor!r} only, got {sorted(actions)}")
        raw = action_text(actions[actor])
        observations: dict[PlayerId, list[Message]] = {}
        refused: tuple[InvalidAction, ...] = ()
        if actor == INSTRUCTOR:
            refused = self._instructor_says(dialogue, raw, observations)
        else:
            refused = self._navigator_acts(dialogue, raw, observations)
        if not dialogue.done and dialogue.navigator_steps >= self.max_steps:
            self._finish(dialogue, "max_steps")
        elif (
            not dialogue.done and dialogue.utterances >= self.max_utterances and dialogue.to_act == INSTRUCTOR
        ):
            self._finish(dialogue, "max_utterances")
        if dialogue.done:
            reward = dialogue.final_info["reward"]
            return TimeStep(
                to_act=(),
                observations=observations,
                rewards={NAVIGATOR: reward, INSTRUCTOR: reward},
                terminated=dialogue.termination == "answered",
                truncated=dialogue.termination != "answered",
                info=dict(dialogue.final_info),
                invalid_actions=refused,
            )
        return TimeStep(to_act=(dialogue.to_act,), observations=observations, invalid_actions=refused)

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        return None

    def render(self) -> str:
        dialogue = self._current()
        lines = [f"weblinx task {dialogue.task.id} [{dialogue.task.site}] to act: {dialogue.to_act}"]
        lines += [f"{who}: {text}" for who, text in dialogue.turns[-10:]]
        lines.append(dialogue.site.view(dialogue.task.intent))
        return "\n".join(lines)

    def close(self) -> None:
        if self._dialogue is not None:
            self._dialogue.site.close()
            self._dialogue = None

    def privileged_view(self, player: PlayerId) -> WeblinxView:
        dialogue = self._current()
        name = str(self.spec.id) if self.spec is not None else type(self).__name__
        return WeblinxView(name, dialogue.task, dialogue.site.page)

    @property
    def page(self) -> PageState:
        return self._current().site.page

    @property
    def to_act(self) -> PlayerId:
        return self._current().to_act

    def sample_action(self, player: PlayerId, rng: random.Random) -> Action:
        """A random action for conformance checks: the instructor says a line; the navigator
        clicks, asks or (a quarter of the time) answers."""
        if player == INSTRUCTOR:
            return rng.choice(("Please open the first link.", "Thanks, that's all."))
        draw = rng.random()
        controls = [e for e in self._current().site.page.elements if e.role in CONTROL_ROLES]
        if draw < 0.25 or not controls:
            return "answer"
        if draw < 0.4:
            return 'say "What next?"'
        return f"click [{rng.choice(controls).pid}]"

    # ----- internals ---------------------------------------------------------------------------
    def _current(self) -> _Dialogue:
        if self._dialogue is None:
            raise ValueError("weblinx env: call reset() before using the episode")
        return self._dialogue

    def _instructor_says(
        self, dialogue: _Dialogue, raw: str, observations: dict[PlayerId, list[Message]]
    ) -> tuple[InvalidAction, ...]:
        text = " ".join(raw.split())
        if not text or len(text) > _MAX_UTTERANCE:
            reason = "say something to the navigator" if not text else f"at most {_MAX_UTTERANCE} characters"
            observations[INSTRUCTOR] = [Message(role="user", content=f"(not sent: {reason})", name="env")]
            return (InvalidAction(player=INSTRUCTOR, action=raw[:_MAX_ECHO], reason=reason, outcome="retry"),)
        dialogue.utterances += 1
        dialogue.turns.append((INSTRUCTOR, text))
        dialogue.to_act = NAVIGATOR
        messages = [Message(role="user", content=self._navigator_view(dialogue), name=INSTRUCTOR)]
        if dialogue.utterances == 1:
            messages.insert(0, Message(role="system", content=NAVIGATOR_RULES))
        observations[NAVIGATOR] = messages
        return ()

    def _navigator_acts(
        self, dialogue: _Dialogue, raw: str, observations: dict[PlayerId, list[Message]]
    ) -> tuple[InvalidAction, ...]:
        dialogue.navigator_steps += 1
        refused: tuple[InvalidAction, ...] = ()
        try:
            action = parse(raw, allow_say=True)
        except ActionError as error:
            dialogue.alignment.score(None, dialogue.site.page)
            refused = self._refuse(dialogue, raw, str(error))
        else:
            dialogue.alignment.score(action, dialogue.site.page)
            if action.kind == "say":
                return self._navigator_says(dialogue, action, observations)
            if action.kind == "answer":
                dialogue.answer = action.text
                dialogue.last = f"{action} -> the episode ends"
                self._finish(dialogue, "answered")
                return ()
            refused = self._browse(dialogue, raw, action)
        observations[NAVIGATOR] = [Message(role="user", content=self._navigator_view(dialogue), name="env")]
        return refused

    def _navigator_says(
        self, dialogue: _Dialogue, action: WebAction, observations: dict[PlayerId, list[Message]]
    ) -> tuple[InvalidAction, ...]:
        dialogue.turns.append((NAVIGATOR, action.text))
        dialogue.questions += "?" in action.text
        dialogue.last = f"{action}"
        dialogue.to_act = INSTRUCTOR
        heard = f"{action.text}\n(The navigator is on {dialogue.site.page.path}: {dialogue.site.page.title})"
        observations[INSTRUCTOR] = [Message(role="user", content=heard, name=NAVIGATOR)]
        return ()

    def _browse(self, dialogue: _Dialogue, raw: str, action: WebAction) -> tuple[InvalidAction, ...]:
        try:
            effect = dialogue.site.run(action)
        except (RefusedAction, PageActionError) as error:
            return self._refuse(dialogue, raw, str(error))
        dialogue.last = f"{action} -> {effect}"
        return ()

    def _refuse(self, dialogue: _Dialogue, raw: str, reason: str) -> tuple[InvalidAction, ...]:
        dialogue.errors += 1
        dialogue.last = f"refused ({reason})"
        return (InvalidAction(player=NAVIGATOR, action=raw[:_MAX_ECHO], reason=reason, outcome="retry"),)

    def _navigator_view(self, dialogue: _Dialogue) -> str:
        said = [text for who, text in dialogue.turns if who == INSTRUCTOR][-self.history :]
        lines = ["Instructor said:", *(f"- {text}" for text in said), f"Last action: {dialogue.last}"]
        lines.append(dialogue.site.view(" ".join(said[-2:]) + " " + dialogue.last))
        return "\n".join(lines)

    def _finish(self, dialogue: _Dialogue, termination: str) -> None:
        dialogue.done = True
        dialogue.termination = termination
        dialogue.to_act = NAVIGATOR
        verdict = grade(dialogue.task, dialogue.site.db, dialogue.answer)
        scores = dialogue.alignment.summary()
        dialogue.final_info = {
            "task_id": dialogue.task.id,
            "site": dialogue.task.site,
            "kind": dialogue.task.kind,
            "split": dialogue.task.split,
            "termination": termination,
            "reward": verdict.reward,
            "grade": verdict.to_dict(),
            "answer": dialogue.answer,
            "steps": dialogue.navigator_steps,
            "errors": dialogue.errors,
            "weblinx": {
                **scores,
                "task_success": verdict.reward >= 1.0,
                "instructor_turns": dialogue.utterances,
                "navigator_utterances": sum(1 for who, _ in dialogue.turns if who == NAVIGATOR),
                "questions": dialogue.questions,
            },
        }
        if dialogue.site.screenshots:
            dialogue.final_info["screenshots"] = list(dialogue.site.screenshots)


def play_conversation(env: WeblinxEnv, seed: int, navigator: str = "gold") -> dict[str, Any]:
    """One episode with the scripted instructor and the gold (or do-nothing) navigator; its info."""
    step = env.reset(seed=seed)
    view = env.privileged_view(NAVIGATOR)
    gold, instructor = view.gold(), view.instructor()
    heard: list[Message] = []
    while not step.done:
        heard.extend(step.observations.get(INSTRUCTOR, ()))
        if env.to_act == INSTRUCTOR:
            action = instructor.act(heard)
        else:
            action = gold.act(env.page) if navigator == "gold" else "answer"
        step = env.step({env.to_act: action})
    return dict(step.info)


def validate_weblinx(tasks: Sequence[str] | None) -> Any:
    """`palaestra validate web:weblinx`: every conversational task, the gold navigator with the
    scripted instructor scores 1.0 with full element accuracy; answering at once fails."""
    from palaestra.core.validation import ValidationReport, null_check

    pool = [t for t in task_pool() if t.turns and (not tasks or t.id in tasks)]
    checks = []
    for task in pool:
        env = WeblinxEnv(task=task.id)
        try:
            gold = play_conversation(env, 0)
            null = play_conversation(env, 0, navigator="noop")
        finally:
            env.close()
        check = null_check(task.id, gold["reward"], null["reward"], subset=task.site)
        scores = gold["weblinx"]
        if scores["element_accuracy"] not in (None, 1.0) or scores["intent_match"] != 1.0:
            check.problems.append(f"the gold navigator scored {scores} against its own script")
        check.extra = {"turns": str(scores["instructor_turns"])}
        checks.append(check)
    return ValidationReport(target="web:weblinx", checks=checks)
