"""`TeamEnv`: what every team world shares. A team of seats solves one checkable task together.

A team world is a sequence of *asks*: the env asks one member, or several at once (a debate
round: `to_act` lists every debater), for one kind of contribution, reads the replies, records
each as a `Move`, and opens the next ask until the team's final answer is known. Kinds:

    answer    an answer to the task (choices listed when the task has a few and `choices=true`);
              with tools on, the member may first call one (`calc: 3+4*2`, `python: max([3, 7])`),
              gets the result and is asked again (at most `max_tool_calls` calls per ask)
    message   a discussion message; an answer in it is optional
    verdict   `correct` or `wrong` about an answer under review, with reasons around it
    review    `approve` or `revise` (the assistant-critic loop), with feedback around it
    critique  free text about the others' reasoning
    plan      free text: the next sub-goal (AgentFlow's planner)
    tool      one tool call (AgentFlow's executor)
    stop      `stop` or `continue` (AgentFlow's verifier)
    pick      one of the answers given (a judge)

Replies: the answer or choice is the text inside the last `<answer>…</answer>`, else the whole
reply (`palaestra.envs.reasoning.env.read_answer`; answers are compared in the task's canonical
form, so `7` and ` 7.` agree). An unreadable reply (no answer, a choice not offered, no tool
call where one is asked for, an overlong reply) is refused: asked again up to `retries` times,
the others' replies kept, then the ask's default is used (no answer, `wrong`, `revise`,
`continue`, no call). Every member's turn is a seat's turn: batched, recorded and trainable.

Every member sees the rules once, then a turn block in the MARS layout whose GAME STATE holds all
it may see now (compact enough for the tiny model, which reads only the latest block):

    Information of Turn-2:
    GAME STATE:
    debater_1, round 2 of 2
    Q: What is 3+4?
    debater_0 said: 7
    debater_2 said: 8
    You said: 7
    Your answer?
    LEGAL ACTIONS: 0, 1, ..., 18

The episode's reward is the team's: every seat gets the score of the final answer (1 right, 0
wrong; reasoning-gym's partial scores as they are). `info["team"]` holds the task, the final
answer and its rule, and every move (seat, role, round, kind, answer thread, text, answer and
whether it was right, whether the member had seen a teammate yet, whether the text was on task,
tool calls and results): what `palaestra.eval.teams` scores. Scripted members read
`privileged_view(seat).facts()` (`TeamView`): the ask, the question, what the seat can see, and
the task solver's answer (so that an always-correct member exists without a model).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from palaestra.core.answers import last_answer, without_answers
from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep, action_text
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.envs.reasoning.env import MAX_ANSWER_CHARS, answer_of, flag, read_answer, whole_number
from palaestra.envs.reasoning.evaluator import ToolError, calculate, evaluate, format_number, show
from palaestra.envs.reasoning.sources import source_for
from palaestra.envs.reasoning.tasks import Task, check_split

ECHO = 500
SHOWN_TEXT = 160
"""Characters of a teammate's words shown to the others (reasons, critiques, plans)."""
KEPT_TEXT = 400
"""Characters of a move's text kept in `info["team"]`."""
TOOLS = ("calc", "python", "check")
CHOICES: dict[str, tuple[str, ...]] = {
    "verdict": ("correct", "wrong"),
    "review": ("approve", "revise"),
    "stop": ("stop", "continue"),
}
ALIASES: dict[str, dict[str, str]] = {
    "verdict": {"right": "correct", "yes": "correct", "true": "correct", "incorrect": "wrong", "no": "wrong"},
    "review": {"approved": "approve", "accept": "approve", "ok": "approve", "reject": "revise"},
    "stop": {"done": "stop", "enough": "stop", "more": "continue", "next": "continue"},
}
DEFAULTS: dict[str, str] = {"verdict": "wrong", "review": "revise", "stop": "continue"}
ANSWER_KINDS = frozenset({"answer", "message", "pick"})
FREE_KINDS = frozenset({"message", "critique", "plan"})
_TOOL_LINE = re.compile(r"^\s*(calc|python|check)\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]{3,}|-?\d+")
STOPWORDS = frozenset(
    {
        "what", "which", "who", "whom", "the", "and", "each", "one", "own", "owns", "does", "not", "number",
        "numbers", "largest", "sort", "ascending", "descending", "likes", "like", "colour", "pet",
        "calculate", "state", "final", "answer", "following", "problem",
    }
)  # fmt: skip


@dataclass
class Ask:
    """One question put to one or several members at once.

    Fields:
        kind: one of the kinds in the module docstring.
        seats: who must reply, in seat order.
        round: the world's round (1-based) it belongs to.
        threads: per seat, the answer thread its answer continues (flips are counted along a
            thread: a debater's own, or the team's in a pipeline); default the seat.
        tools: whether an answer may first call a tool.
        choices: the legal replies of a choice kind (`pick`: the answers given).
        note: the instruction line shown under the state.
    """

    kind: str
    seats: tuple[PlayerId, ...]
    round: int = 1
    threads: dict[PlayerId, str] = field(default_factory=dict)
    tools: bool = False
    choices: tuple[str, ...] | None = None
    note: str = ""


@dataclass
class Move:
    """One member's contribution (see the module docstring); `info["team"]["moves"]` holds them."""

    seat: PlayerId
    role: str
    round: int
    kind: str
    thread: str | None = None
    text: str = ""
    answer: str | None = None
    correct: bool | None = None
    choice: str | None = None
    solo: bool = False
    on_task: bool | None = None
    tool: str | None = None
    result: str | None = None


@dataclass
class _Core:
    """The base class's share of the episode state (deep-copied by `snapshot`)."""

    task: Task | None = None
    done: bool = True
    ask: Ask | None = None
    waiting: tuple[PlayerId, ...] = ()
    replies: dict[PlayerId, Move] = field(default_factory=dict)
    strikes: dict[PlayerId, int] = field(default_factory=dict)
    tool_calls: dict[PlayerId, int] = field(default_factory=dict)
    tool_results: dict[PlayerId, list[str]] = field(default_factory=dict)
    turns: dict[PlayerId, int] = field(default_factory=dict)
    seen: dict[PlayerId, bool] = field(default_factory=dict)
    moves: list[Move] = field(default_factory=list)
    outbox: dict[PlayerId, list[Message]] = field(default_factory=dict)
    final: str | None = None
    score: float = 0.0
    final_info: dict[str, Any] = field(default_factory=dict)
    queued: list[PlayerId] = field(default_factory=list)


def find_tool_call(action: Action) -> tuple[str, str] | None:
    """(tool, expression) of the first tool call in an action, or None: a native tool call named
    `calc`/`python`/`check`, else a line `calc: EXPR` in the answer tag or the text."""
    if isinstance(action, Message) and action.tool_calls:
        call = action.tool_calls[0]
        name = call.name.lower()
        expression = call.arguments.get("expression") or next(
            (v for v in call.arguments.values() if isinstance(v, str)), call.raw_arguments or ""
        )
        return (name, str(expression)) if name in TOOLS else None
    text = action_text(action)
    found = last_answer(text)
    for candidate in (found, text):
        if candidate:
            match = _TOOL_LINE.search(candidate)
            if match:
                return match.group(1).lower(), match.group(2)
    return None


def run_tool(tool: str, expression: str) -> str:
    """The tool's result as a member reads it (`error: ...` when the tool refused)."""
    try:
        if tool == "calc":
            return format_number(calculate(expression))
        return show(evaluate(expression))
    except ToolError as exc:
        return f"error: {exc}"


def parse_choice(text: str, choices: Sequence[str], aliases: Mapping[str, str]) -> str | None:
    """One of `choices` from a reply: an exact match or alias (any case), else the only choice
    named as a whole word; None when none or several are named."""
    stated = answer_of(text).strip().strip(".!\"'`*").lower()
    by_lower = {choice.lower(): choice for choice in choices}
    if stated in by_lower:
        return by_lower[stated]
    if stated in aliases and aliases[stated] in choices:
        return aliases[stated]
    named = {
        choice
        for word, choice in {**by_lower, **aliases}.items()
        if choice in choices and re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", stated)
    }
    return named.pop() if len(named) == 1 else None


def _without_word(text: str, word: str) -> str:
    """`text` without the inside of its answer tag, or else without the first `word`."""
    around = without_answers(text)
    if around is not None:
        return around
    return re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", " ", text, count=1, flags=re.IGNORECASE)


def keywords(question: str) -> frozenset[str]:
    """The question's content words and numbers (what an on-task message mentions)."""
    return frozenset(w.lower() for w in _WORD.findall(question) if w.lower() not in STOPWORDS)


def reasons_of(text: str) -> str:
    """What a reply says besides its answer, squeezed to one line."""
    around = without_answers(text)
    words = " ".join((around if around is not None else "").split())
    return words if len(words) <= SHOWN_TEXT else words[: SHOWN_TEXT - 3] + "..."


def cut(text: str, limit: int = SHOWN_TEXT) -> str:
    words = " ".join(text.split())
    return words if len(words) <= limit else words[: limit - 3] + "..."


class TeamView:
    """What scripted members in one seat may read: `facts()` (see `TeamEnv.facts`)."""

    __slots__ = ("_env", "seat")

    def __init__(self, env: TeamEnv, seat: PlayerId) -> None:
        self._env = env
        self.seat = seat

    @property
    def env_name(self) -> str:
        spec = self._env.spec
        return str(spec.id) if spec is not None else type(self._env).__name__

    def facts(self) -> dict[str, Any]:
        return self._env.facts(self.seat)


class TeamEnv:
    """Base class of the team worlds; see the module docstring.

    Subclasses set `world`, `title`, `self.players` and `self.roles` (seat -> role) in `__init__`
    after calling `super().__init__`, and implement `_start`, `_advance`, `_state`, `_rules`, and
    usually `_role_text` and `_facts`.
    """

    world = "team"
    title = "a team solving a reasoning task"

    def __init__(
        self,
        *,
        task: str = "arithmetic",
        difficulty: int | None = None,
        split: str = "train",
        choices: bool = True,
        retries: int = 1,
        max_tool_calls: int = 2,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        task_options: Mapping[str, Any] | None = None,
    ) -> None:
        if task_options is not None and not isinstance(task_options, Mapping):
            raise EnvError(f"task_options must be a table of the task's options, got {task_options!r}")
        self.spec: EnvSpec | None = None
        self.source = source_for(task, difficulty, dict(task_options or {}))
        self.split = check_split(split)
        self.show_choices = flag("choices", choices)
        self.retries = whole_number("retries", retries, 0, 5)
        self.max_tool_calls = whole_number("max_tool_calls", max_tool_calls, 0, 10)
        self.max_answer_chars = whole_number("max_answer_chars", max_answer_chars, 1)
        self.players: tuple[PlayerId, ...] = ()
        self.roles: dict[PlayerId, str] = {}
        self.core = _Core()
        self._views: dict[PlayerId, TeamView] = {}
        self._keywords: frozenset[str] = frozenset()
        self.sequential = False
        """Ask the members of a joint ask one after another (`coa:` worlds, one seat playing every
        role); their replies are still read together, so none sees another's reply of that ask."""

    # ----- hooks for subclasses -----------------------------------------------------------------
    def _start(self) -> None:
        """Open the first ask."""
        raise NotImplementedError

    def _advance(self, ask: Ask, replies: dict[PlayerId, Move]) -> None:
        """Every member of `ask` replied (its moves are recorded): open the next ask or `_finish`."""
        raise NotImplementedError

    def _state(self, seat: PlayerId, ask: Ask) -> list[str]:
        """The GAME STATE lines `seat` is shown for `ask`, after its header line and the question."""
        raise NotImplementedError

    def _rules(self) -> str:
        raise NotImplementedError

    def _role_text(self, seat: PlayerId) -> str:
        return f"You are {seat}, the team's {self.roles[seat]}."

    def _facts(self, seat: PlayerId) -> dict[str, Any]:
        return {}

    def _header(self, seat: PlayerId, ask: Ask) -> str:
        return f"{seat}, round {ask.round}"

    # ----- helpers for subclasses ---------------------------------------------------------------
    @property
    def task(self) -> Task:
        assert self.core.task is not None
        return self.core.task

    def seat_index(self, seat: PlayerId) -> int:
        return self.players.index(seat)

    def ask(self, ask: Ask) -> None:
        """Put `ask` to its members; each gets a turn block."""
        core = self.core
        core.ask = ask
        core.waiting = ask.seats
        core.replies = {}
        core.strikes = dict.fromkeys(ask.seats, 0)
        core.tool_calls = dict.fromkeys(ask.seats, 0)
        core.tool_results = {seat: [] for seat in ask.seats}
        if self.sequential:
            core.waiting, core.queued = ask.seats[:1], list(ask.seats[1:])
        for seat in core.waiting:
            self._prompt(seat, ask)

    def saw(self, seat: PlayerId) -> None:
        """Note that `seat` has now been shown a teammate's contribution (its answers stop being solo)."""
        self.core.seen[seat] = True

    def moves_of(self, *, kind: str | None = None, seat: PlayerId | None = None) -> list[Move]:
        return [
            m
            for m in self.core.moves
            if (kind is None or m.kind == kind) and (seat is None or m.seat == seat)
        ]

    def latest_answers(
        self, seats: Sequence[PlayerId], before_round: int | None = None
    ) -> dict[PlayerId, str | None]:
        """Each seat's latest stated answer (before `before_round` if given), None if it gave none."""
        latest: dict[PlayerId, str | None] = dict.fromkeys(seats)
        for move in self.core.moves:
            if self._counts(move, before_round) and move.seat in latest:
                latest[move.seat] = move.answer
        return latest

    def answer_history(
        self, seats: Sequence[PlayerId], before_round: int | None = None
    ) -> dict[PlayerId, list[str]]:
        """Each seat's stated answers in order (before `before_round` if given)."""
        history: dict[PlayerId, list[str]] = {seat: [] for seat in seats}
        for move in self.core.moves:
            if self._counts(move, before_round) and move.seat in history:
                history[move.seat].append(move.answer)  # type: ignore[arg-type]
        return history

    @staticmethod
    def _counts(move: Move, before_round: int | None) -> bool:
        """Whether `move` states an answer (before `before_round`, when given)."""
        early = before_round is None or move.round < before_round
        return move.kind in ANSWER_KINDS and move.answer is not None and early

    def _finish(self, final: str | None, rule: str) -> None:
        """End the episode with the team's `final` answer, decided by `rule`."""
        core = self.core
        core.done, core.ask, core.waiting = True, None, ()
        core.final = final
        core.score = self.source.score(self.task, final) if final is not None else 0.0
        verdict = "right" if core.score >= 1.0 else "wrong"
        for seat in self.players:
            self._tell(
                seat, f"GAME OVER. The team answered {final if final is not None else 'nothing'}: {verdict}."
            )
        returns = dict.fromkeys(self.players, core.score)
        tools = {seat: len([m for m in core.moves if m.seat == seat and m.tool]) for seat in self.players}
        core.final_info = {
            "returns": returns,
            "team": {
                "world": self.world,
                "task": self.task.to_dict(),
                "source": self.source.label,
                "final": final,
                "score": core.score,
                "correct": core.score >= 1.0,
                "rule": rule,
                "seats": dict(self.roles),
                "rounds": max((m.round for m in core.moves), default=0),
                "tool_calls": tools,
                "moves": [asdict(move) for move in core.moves],
            },
        }

    def _tell(self, seat: PlayerId, text: str, *, speaker: str = "env") -> None:
        self.core.outbox.setdefault(seat, []).append(Message(role="user", name=speaker, content=text))

    # ----- Env API ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        task = self.source.task(self.split, seed or 0)
        self.core = core = _Core(task=task, done=False)
        core.turns = dict.fromkeys(self.players, 0)
        core.seen = dict.fromkeys(self.players, False)
        self._keywords = keywords(task.question)
        self._views = {seat: TeamView(self, seat) for seat in self.players}
        for seat in self.players:
            core.outbox[seat] = self._intro(seat)
        self._start()
        return self._timestep()

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        core = self.core
        if core.done or core.ask is None:
            raise ValueError(f"{self.world}: the episode is over; call reset() first")
        if set(actions) != set(core.waiting) or len(actions) != len(core.waiting):
            raise ValueError(
                f"{self.world}: expected one action for each of {list(core.waiting)}, got {sorted(actions)}"
            )
        ask = core.ask
        refused: list[InvalidAction] = []
        again: list[tuple[PlayerId, str]] = []
        for seat in core.waiting:
            outcome = self._read(seat, ask, actions[seat])
            if isinstance(outcome, Move):
                core.replies[seat] = outcome
                continue
            kind, text, reason = outcome
            if kind == "tool":
                again.append((seat, ""))
                continue
            if core.strikes[seat] < self.retries:
                core.strikes[seat] += 1
                refused.append(InvalidAction(seat, text[:ECHO], reason, "retry"))
                again.append((seat, reason))
            else:
                refused.append(InvalidAction(seat, text[:ECHO], reason, "default"))
                core.replies[seat] = self._default_move(seat, ask, text)
        if again:
            core.waiting = tuple(seat for seat, _ in again)
            for seat, reason in again:
                self._prompt(seat, ask, retry_reason=reason)
            return self._timestep(tuple(refused))
        if core.queued:
            core.waiting = (core.queued.pop(0),)
            self._prompt(core.waiting[0], ask)
            return self._timestep(tuple(refused))
        core.waiting = ()
        replies = {seat: core.replies[seat] for seat in ask.seats}
        core.moves.extend(replies.values())
        self._advance(ask, replies)
        return self._timestep(tuple(refused))

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        core = self.core
        if core.done or core.ask is None or player not in core.waiting:
            return []
        return self._legal(core.ask)

    def sample_action(self, player: PlayerId, rng: Any) -> Action:
        """A random reply for free-form asks (check_env and random play)."""
        options = [
            "",
            "I am not sure.",
            "<answer>7</answer>",
            "calc: 2+2",
            "python: sorted([3, 1, 2])",
            "Ann",
        ]
        return str(rng.choice(options))

    def privileged_view(self, player: PlayerId) -> TeamView:
        return self._views[player]

    def facts(self, seat: PlayerId) -> dict[str, Any]:
        """What scripted members in `seat` read: the ask (kind, round, choices, the seats asked),
        the question, the task solver's answer (`solution`), wrong answers that look right
        (`distractors`), a tool command that computes the answer (`command`), the latest and
        all answers of the seats it can see (`peers`, `peer_history`), its own answers (`own`),
        this ask's tool results, and the world's own facts."""
        core = self.core
        ask = core.ask if core.ask is not None and seat in core.waiting else None
        task = core.task
        if task is None:
            return {"world": self.world, "seat": seat, "kind": None}
        visible = [other for other in self.players if other != seat and self._sees(seat, other)]
        return {
            "world": self.world,
            "seat": seat,
            "seat_index": self.seat_index(seat),
            "seats": list(self.players),
            "role": self.roles.get(seat, ""),
            "kind": ask.kind if ask else None,
            "round": ask.round if ask else None,
            "choices": self._legal(ask) if ask else None,
            "tools": bool(ask and ask.tools),
            "question": task.question,
            "solution": self.source.solve(task),
            "distractors": self.source.distractors(task, 3),
            "command": task.command,
            "peers": self._visible_latest(seat, visible, ask),
            "peer_history": self._visible_history(seat, visible, ask),
            "own": self.answer_history([seat])[seat],
            "tool_results": list(core.tool_results.get(seat, [])),
            **self._facts(seat),
        }

    def render(self) -> str:
        task = self.core.task
        if task is None:
            return "(not started)"
        lines = [f"{self.world} on {task.id}: {task.question} (gold {task.answer})"]
        for move in self.core.moves:
            said = move.answer if move.answer is not None else move.choice or move.tool or cut(move.text, 60)
            lines.append(f"  r{move.round} {move.seat} {move.kind}: {said}")
        if self.core.done:
            lines.append(f"  final: {self.core.final} (score {self.core.score:g})")
        return "\n".join(lines)

    def close(self) -> None:
        return None

    def snapshot(self) -> Any:
        return copy.deepcopy(self.core)

    def restore(self, snapshot: Any) -> None:
        self.core = copy.deepcopy(snapshot)
        self._keywords = keywords(self.task.question) if self.core.task is not None else frozenset()

    def state_hash(self) -> str:
        return hashlib.sha256(repr(self.core).encode()).hexdigest()

    # ----- visibility (debate-like worlds override `_sees`) ---------------------------------------
    def _sees(self, seat: PlayerId, other: PlayerId) -> bool:
        return True

    def _visible_latest(
        self, seat: PlayerId, visible: Sequence[PlayerId], ask: Ask | None
    ) -> dict[PlayerId, str]:
        before = ask.round if ask is not None and ask.kind == "answer" and len(ask.seats) > 1 else None
        latest = self.latest_answers(visible, before_round=before)
        return {other: answer for other, answer in latest.items() if answer is not None}

    def _visible_history(
        self, seat: PlayerId, visible: Sequence[PlayerId], ask: Ask | None
    ) -> dict[PlayerId, list[str]]:
        before = ask.round if ask is not None and ask.kind == "answer" and len(ask.seats) > 1 else None
        return self.answer_history(visible, before_round=before)

    # ----- internals ---------------------------------------------------------------------------------
    def _legal(self, ask: Ask) -> tuple[str, ...] | None:
        if ask.kind in CHOICES:
            return CHOICES[ask.kind]
        if ask.kind == "pick":
            return ask.choices
        if ask.kind == "answer":
            return self._legal_answers()
        return None

    def _read(self, seat: PlayerId, ask: Ask, action: Action) -> Move | tuple[str, str, str]:
        """The reply as a move, or (`tool`, ...) after a tool call, or (`refused`, text, reason)."""
        text = action_text(action)
        if len(text) > self.max_answer_chars:
            return (
                "refused",
                text,
                f"the reply has {len(text)} characters, over the {self.max_answer_chars} limit",
            )
        move = Move(
            seat, self.roles[seat], ask.round, ask.kind, ask.threads.get(seat, seat), cut(text, KEPT_TEXT)
        )
        move.solo = not self.core.seen.get(seat, False)
        if ask.kind in ("answer", "tool"):
            call = find_tool_call(action)
            tagged = last_answer(text)
            # With tools on, a reply is a call when its answer tag holds one, or it has no tag at all.
            calls = ask.kind == "tool" or (ask.tools and (tagged is None or _TOOL_LINE.match(tagged)))
            if call is not None and calls:
                return self._call_tool(seat, ask, move, call, text)
            if ask.kind == "tool":
                return (
                    "refused",
                    text,
                    "no tool call; write one line such as calc: 3+4*2 or python: sorted([3, 1, 2])",
                )
        if ask.kind in CHOICES or ask.kind == "pick":
            choices = self._legal(ask) or ()
            picked = parse_choice(text, choices, ALIASES.get(ask.kind, {}))
            if picked is None:
                return "refused", text, f"give one of: {', '.join(choices)}"
            move.choice = picked if ask.kind != "pick" else None
            move.answer = picked if ask.kind == "pick" else None
        elif ask.kind == "answer":
            canonical, reason = read_answer(
                self.source, self.task, text, choices=self._legal(ask), max_chars=self.max_answer_chars
            )
            if canonical is None:
                return "refused", text, reason
            move.answer = canonical
        elif ask.kind == "message":
            move.answer = self._stated_answer(text)
        if move.answer is not None:
            move.correct = self.source.score(self.task, move.answer) >= 1.0
        # A choice (verdict, review, stop) is judged by the words around it: a bare `wrong` says nothing.
        said = _without_word(text, move.choice) if move.choice is not None else text
        move.on_task = self._on_task(said, move.answer)
        return move

    def _stated_answer(self, text: str) -> str | None:
        """The answer a discussion message states: its answer tag's, or the whole message when it is
        a short reply (at most three words) that reads as an answer; None otherwise."""
        tagged = last_answer(text)
        if tagged is None and len(text.split()) > 3:
            return None
        canonical, _ = read_answer(
            self.source, self.task, text, choices=self._legal_answers(), max_chars=self.max_answer_chars
        )
        return canonical

    def _legal_answers(self) -> tuple[str, ...] | None:
        return self.task.choices if self.show_choices else None

    def _call_tool(
        self, seat: PlayerId, ask: Ask, move: Move, call: tuple[str, str], text: str
    ) -> Move | tuple[str, str, str]:
        core = self.core
        tool, expression = call
        if ask.kind == "answer" and core.tool_calls[seat] >= self.max_tool_calls:
            return (
                "refused",
                text,
                f"no tool calls left in this turn ({self.max_tool_calls}); give your answer",
            )
        result = run_tool(tool, expression)
        move.tool, move.result = f"{tool}: {cut(expression, 200)}", result
        move.on_task = True
        if ask.kind == "tool":
            return move
        core.tool_calls[seat] += 1
        core.tool_results[seat].append(f"{tool}({cut(expression, 80)}) = {result}")
        move.kind = "tool"
        core.moves.append(move)
        return "tool", text, ""

    def _default_move(self, seat: PlayerId, ask: Ask, text: str) -> Move:
        move = Move(
            seat, self.roles[seat], ask.round, ask.kind, ask.threads.get(seat, seat), cut(text, KEPT_TEXT)
        )
        move.solo = not self.core.seen.get(seat, False)
        move.choice = DEFAULTS.get(ask.kind)
        move.on_task = self._on_task(text, None)
        return move

    def _on_task(self, text: str, answer: str | None) -> bool | None:
        """Whether a reply keeps to the task: it states an answer, names one of the question's
        content words or numbers, or names a possible answer (`I get 7`: one of the choices, or a
        number the task reads as an answer); None for a reply without a word of three letters or a
        number (nothing to judge)."""
        if answer is not None:
            return True
        found = _WORD.findall(text)
        if not found:
            return None
        if {w.lower() for w in found} & self._keywords:
            return True
        legal = self._legal_answers()
        for word in found[:50]:
            if legal is None and not word.lstrip("-").isdigit():
                continue  # free-form answers: only a number reads as a possible answer
            stated = self.source.normalize(self.task, word)
            if stated is not None and (legal is None or stated in legal):
                return True
        return False

    def _intro(self, seat: PlayerId) -> list[Message]:
        size = len(self.players)
        return [
            Message(
                role="system", name="env", content=f"You are taking part in {self.title} ({size} members)."
            ),
            Message(
                role="user",
                name="env",
                content=(
                    f"GAME RULES:\n{self._rules()}\n\nPLAYER INFORMATION:\n{self._role_text(seat)}\n\n"
                    "RESPONSE INSTRUCTIONS:\nThink if you like, then put your reply inside "
                    "<answer></answer>: "
                    "an answer such as <answer>7</answer>, or one of the legal actions when they are listed. "
                    "Words outside the tags are shown to your teammates as your reasons. Where tools are "
                    "allowed, a line calc: 3+4*2 or python: sorted([3, 1, 2]) calls one."
                ),
            ),
        ]

    def _prompt(self, seat: PlayerId, ask: Ask, retry_reason: str = "") -> None:
        core = self.core
        prefix = f"Invalid action: {retry_reason}. Try again.\n" if retry_reason else ""
        if not retry_reason and not core.tool_results.get(seat):
            core.turns[seat] += 1  # a retry or the answer after a tool call is the same turn
        lines = [f"{prefix}Information of Turn-{core.turns[seat]}:", "GAME STATE:", self._header(seat, ask)]
        lines.append(f"Q: {self.task.question}")
        lines.extend(self._state(seat, ask))
        lines.extend(f"Tool: {result}" for result in core.tool_results.get(seat, []))
        if ask.note:
            lines.append(ask.note)
        legal = self._legal(ask)
        if legal is not None:
            lines.append("LEGAL ACTIONS: " + ", ".join(legal))
        self._tell(seat, "\n".join(lines))

    def _timestep(self, refused: tuple[InvalidAction, ...] = ()) -> TimeStep:
        core = self.core
        observations = {seat: messages for seat, messages in core.outbox.items() if messages}
        core.outbox = {}
        if core.done:
            returns = core.final_info["returns"]
            return TimeStep(
                to_act=(), observations=observations, rewards=dict(returns), terminated=True,
                info=dict(core.final_info), invalid_actions=refused,
            )  # fmt: skip
        return TimeStep(to_act=core.waiting, observations=observations, invalid_actions=refused)


def majority(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer (None answers do not vote); a tie goes to the answer given first
    in seat order among the tied ones; None when nobody answered."""
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(answer for answer in answers if answer is not None and counts[answer] == best)


__all__ = [
    "ALIASES",
    "ANSWER_KINDS",
    "CHOICES",
    "TOOLS",
    "Ask",
    "Move",
    "TeamEnv",
    "TeamView",
    "cut",
    "find_tool_call",
    "keywords",
    "majority",
    "parse_choice",
    "reasons_of",
    "run_tool",
]
