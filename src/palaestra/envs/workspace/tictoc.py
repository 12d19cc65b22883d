"""`TicTocEnv` (`tictoc-v0`): does the agent re-call a tool when time has made what it knows stale,
and only then? (TicToc, docs/references.md §5.)

A user asks about live facts over a working day (a stock quote, a flight's status, the weather,
a clinic's waiting time, office hours); every question carries its time, and the world clock
jumps between questions. Each fact has a time-sensitivity level with a freshness window:

    high    10 minutes     quotes, exchange rates, waiting times, free parking spaces
    medium  2 hours        flight status, weather, the doctor on call, analyst ratings
    low     7 days         office hours, check-in times, earnings dates

The world labels every question: a call is **needed** when the fact was never asked before or
when the window has passed since the last needed call (the world's own clock of staleness), and
the fact's value changes exactly at those times, so an answer from older information is wrong.
Scoring: the reward is the share of questions answered with the current value; strict success is
all of them. `info["tictoc"]` counts, per level, needed calls made and missed, redundant calls
(a call when none was needed) and right skips, and the alignment rate: the share of questions
where calling or not matched the label.

One seat, `agent`; a question ends when the agent answers in text (it may call tools first).
Turn control applies per question (`turn_limit` defaults to 6). Twelve tasks: three scenarios
(travel, trading, clinic) in four variants, generated from the task id.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from palaestra.core.env import Action, PlayerId, TimeStep
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.core.validation import ValidationCheck, null_check
from palaestra.envs.service.toolkit import (
    ToolContext,
    ToolError,
    ToolSpec,
    clock_text,
    iso_time,
    parse_time,
    tool,
)
from palaestra.envs.service.toolkit import tool_spec as spec_of
from palaestra.envs.workspace.base import (
    AGENT,
    PROMPT_STYLES,
    ToolSeat,
    json_safe,
    parse_choice,
    tools_prompt,
)
from palaestra.envs.workspace.checkers import normalized
from palaestra.envs.workspace.episodes import EpisodeSnapshots
from palaestra.envs.workspace.plans import play_plan
from palaestra.envs.workspace.sandbox import SCHEMA, CallResult, execute_call
from palaestra.envs.workspace.turns import EXTEND_MARKER, TurnBudget, TurnControl, TurnStats
from palaestra.envs.workspace.views import EpisodeView

LEVELS = {"high": 10 * 60, "medium": 2 * 3600, "low": 7 * 86400}
"""Freshness window in seconds by time-sensitivity level."""
PLAN_MODES = ("gold", "stale", "rereads", "idle")


@dataclass(slots=True)
class TicTocContext(ToolContext):
    """The service kit's context plus the facts' timelines: `(tool, key) -> [(from, value), ...]`."""

    timelines: dict[tuple[str, str], list[tuple[float, str]]] = field(default_factory=dict)

    def value(self, tool_name: str, key: str) -> str:
        timeline = self.timelines.get((tool_name, key.strip().upper()))
        if timeline is None:
            known = sorted(k for t, k in self.timelines if t == tool_name)
            raise ToolError(f"{tool_name}: unknown {key!r}; known: {', '.join(known)}")
        current = timeline[0][1]
        for start, value in timeline:
            if start <= self.now:
                current = value
        return current


def _answer(ctx: TicTocContext, tool_name: str, key: str, field_name: str) -> dict[str, str]:
    return {field_name: ctx.value(tool_name, key), "key": key.strip().upper(), "as_of": iso_time(ctx.now)}


@tool
def get_stock_quote(ctx: TicTocContext, symbol: str) -> dict[str, str]:
    """The latest trade price of a stock (prices move minute to minute).

    Args:
        symbol: the ticker, such as 'ACME'.
    """
    return _answer(ctx, "get_stock_quote", symbol, "price")


@tool
def get_exchange_rate(ctx: TicTocContext, pair: str) -> dict[str, str]:
    """The current exchange rate of a currency pair (rates move minute to minute).

    Args:
        pair: such as 'EURUSD'.
    """
    return _answer(ctx, "get_exchange_rate", pair, "rate")


@tool
def get_wait_time(ctx: TicTocContext, site: str) -> dict[str, str]:
    """The current waiting time at a walk-in clinic (it changes every few minutes).

    Args:
        site: the clinic, such as 'NORTH'.
    """
    return _answer(ctx, "get_wait_time", site, "wait")


@tool
def get_parking(ctx: TicTocContext, garage: str) -> dict[str, str]:
    """Free spaces in a parking garage right now (they change every few minutes).

    Args:
        garage: the garage, such as 'P2'.
    """
    return _answer(ctx, "get_parking", garage, "free_spaces")


@tool
def get_flight_status(ctx: TicTocContext, flight: str) -> dict[str, str]:
    """A flight's status (it changes over the hours before departure).

    Args:
        flight: the flight number, such as 'LH400'.
    """
    return _answer(ctx, "get_flight_status", flight, "status")


@tool
def get_weather(ctx: TicTocContext, city: str) -> dict[str, str]:
    """The current weather in a city (it changes over hours).

    Args:
        city: such as 'LISBON'.
    """
    return _answer(ctx, "get_weather", city, "weather")


@tool
def get_on_call(ctx: TicTocContext, department: str) -> dict[str, str]:
    """Who is on call in a department (shifts change every few hours).

    Args:
        department: such as 'CARDIOLOGY'.
    """
    return _answer(ctx, "get_on_call", department, "doctor")


@tool
def get_rating(ctx: TicTocContext, symbol: str) -> dict[str, str]:
    """The consensus analyst rating of a stock (it changes over hours).

    Args:
        symbol: the ticker.
    """
    return _answer(ctx, "get_rating", symbol, "rating")


@tool
def get_opening_hours(ctx: TicTocContext, site: str) -> dict[str, str]:
    """A site's opening hours (they change rarely, over weeks).

    Args:
        site: such as 'NORTH'.
    """
    return _answer(ctx, "get_opening_hours", site, "hours")


@tool
def get_earnings_date(ctx: TicTocContext, symbol: str) -> dict[str, str]:
    """When a company next reports earnings (announced weeks ahead).

    Args:
        symbol: the ticker.
    """
    return _answer(ctx, "get_earnings_date", symbol, "date")


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for fn in (
        get_stock_quote,
        get_exchange_rate,
        get_wait_time,
        get_parking,
        get_flight_status,
        get_weather,
        get_on_call,
        get_rating,
        get_opening_hours,
        get_earnings_date,
    )
    if (spec := spec_of(fn)) is not None
}


# ----- tasks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    tool: str
    key: str
    argument: str
    level: str
    question: str
    values: tuple[str, ...]


@dataclass
class Question:
    time: float
    fact: Fact
    needed: bool
    text: str


@dataclass
class TicTocTask:
    id: str
    scenario: str
    questions: list[Question]
    timelines: dict[tuple[str, str], list[tuple[float, str]]]

    def value_at(self, fact: Fact, moment: float) -> str:
        current = self.timelines[(fact.tool, fact.key)][0][1]
        for start, value in self.timelines[(fact.tool, fact.key)]:
            if start <= moment:
                current = value
        return current


def _series(rng: random.Random, make: Any, count: int = 8) -> tuple[str, ...]:
    values: list[str] = []
    while len(values) < count:
        value = make(rng)
        if value not in values:
            values.append(value)
    return tuple(values)


def _trading_facts(rng: random.Random) -> list[Fact]:
    symbol = rng.choice(["ACME", "GLOBX", "NOVA", "ZENT"])
    return [
        Fact(
            "get_stock_quote",
            symbol,
            "symbol",
            "high",
            f"What is {symbol} trading at",
            _series(rng, lambda r: f"{r.uniform(80, 240):.2f}"),
        ),
        Fact(
            "get_exchange_rate",
            "EURUSD",
            "pair",
            "high",
            "What is the EURUSD rate",
            _series(rng, lambda r: f"{r.uniform(1.05, 1.12):.4f}"),
        ),
        Fact(
            "get_rating",
            symbol,
            "symbol",
            "medium",
            f"What is the analyst consensus on {symbol}",
            ("buy", "hold", "sell", "strong buy", "underweight", "overweight", "neutral", "outperform"),
        ),
        Fact(
            "get_earnings_date",
            symbol,
            "symbol",
            "low",
            f"When does {symbol} report earnings",
            _series(rng, lambda r: f"2024-07-{r.randint(10, 30):02d}"),
        ),
    ]


def _travel_facts(rng: random.Random) -> list[Fact]:
    flight = rng.choice(["LH400", "BA117", "AF023", "TP1352"])
    city = rng.choice(["LISBON", "OSLO", "VIENNA", "DUBLIN"])
    return [
        Fact(
            "get_flight_status",
            flight,
            "flight",
            "medium",
            f"What is the status of flight {flight}",
            (
                "on time",
                "delayed 25 min",
                "delayed 50 min",
                "boarding at gate B12",
                "gate changed to C4",
                "delayed 90 min",
                "boarding at gate C4",
                "on time, gate A7",
            ),
        ),
        Fact(
            "get_weather",
            city,
            "city",
            "medium",
            f"What is the weather in {city.title()}",
            _series(
                rng,
                lambda r: f"{r.randint(8, 30)} C, {r.choice(['sunny', 'cloudy', 'light rain', 'windy'])}",
            ),
        ),
        Fact(
            "get_exchange_rate",
            "EURGBP",
            "pair",
            "high",
            "What is the EURGBP rate",
            _series(rng, lambda r: f"{r.uniform(0.82, 0.88):.4f}"),
        ),
        Fact(
            "get_opening_hours",
            "LOUNGE",
            "site",
            "low",
            "When is the airport lounge open",
            ("05:00-23:00", "06:00-22:00"),
        ),
    ]


def _clinic_facts(rng: random.Random) -> list[Fact]:
    site = rng.choice(["NORTH", "RIVERSIDE", "CENTRAL"])
    return [
        Fact(
            "get_wait_time",
            site,
            "site",
            "high",
            f"How long is the wait at the {site.title()} clinic",
            _series(rng, lambda r: f"{r.randint(5, 95)} min"),
        ),
        Fact(
            "get_parking",
            "P2",
            "garage",
            "high",
            "How many free spaces are there in garage P2",
            _series(rng, lambda r: f"{r.randint(0, 140)} spaces"),
        ),
        Fact(
            "get_on_call",
            "CARDIOLOGY",
            "department",
            "medium",
            "Who is the cardiologist on call",
            (
                "Dr. Okafor",
                "Dr. Lindqvist",
                "Dr. Haddad",
                "Dr. Moreau",
                "Dr. Tanaka",
                "Dr. Silva",
                "Dr. Reyes",
                "Dr. Novak",
            ),
        ),
        Fact(
            "get_opening_hours",
            site,
            "site",
            "low",
            f"When is the {site.title()} clinic open",
            ("08:00-20:00", "07:00-19:00"),
        ),
    ]


def _scenario_facts(scenario: str, rng: random.Random) -> list[Fact]:
    makers = {"trading": _trading_facts, "travel": _travel_facts, "clinic": _clinic_facts}
    return makers[scenario](rng)


GAPS = (2, 4, 7, 12, 18, 35, 50, 80, 130, 160)
"""Minutes between questions: some under the high window, some over it, some over the medium one."""
PHRASES = ("{q}?", "{q} now?", "And {q} at the moment?", "Quick check: {q}?", "{q} right now?")


@lru_cache(maxsize=32)
def tictoc_task(task_id: str) -> TicTocTask:
    """The task with this id (`tictoc-SCENARIO-N`), generated deterministically."""
    parts = task_id.split("-")
    if len(parts) != 3 or parts[0] != "tictoc" or parts[1] not in SCENARIOS or not parts[2].isdigit():
        raise ValueError(
            f"no tictoc task {task_id!r}; ids look like tictoc-travel-1 ({', '.join(SCENARIOS)}, 1-4)"
        )
    rng = random.Random(int(hashlib.sha256(task_id.encode()).hexdigest()[:12], 16))
    facts = _scenario_facts(parts[1], rng)
    # Each fact is asked two to four times (the low one twice), in a shuffled order.
    order = [f for f in facts for _ in range(2 if f.level == "low" else rng.randint(2, 4))]
    rng.shuffle(order)
    moment = parse_time("2024-06-10T08:30:00Z") + 60 * rng.randint(0, 45)
    last_needed: dict[Fact, float] = {}
    changes: dict[Fact, int] = {}
    timelines: dict[tuple[str, str], list[tuple[float, str]]] = {
        (f.tool, f.key): [(0.0, f.values[0])] for f in facts
    }
    questions = []
    for index, fact in enumerate(order):
        if index:
            moment += 60 * rng.choice(GAPS)
        seen = last_needed.get(fact)
        needed = seen is None or moment - seen >= LEVELS[fact.level]
        if needed and seen is not None:
            # The fact changed since the last time a call was needed: old information is wrong now.
            changes[fact] = changes.get(fact, 0) + 1
            timelines[(fact.tool, fact.key)].append(
                (moment - 60, fact.values[changes[fact] % len(fact.values)])
            )
        if needed:
            last_needed[fact] = moment
        phrase = rng.choice(PHRASES).format(q=fact.question[0].lower() + fact.question[1:])
        questions.append(Question(moment, fact, needed, phrase[0].upper() + phrase[1:]))
    return TicTocTask(task_id, parts[1], questions, timelines)


SCENARIOS = ("travel", "trading", "clinic")
TASK_IDS = [f"tictoc-{scenario}-{n}" for scenario in SCENARIOS for n in range(1, 5)]


# ----- the env ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Episode:
    task: TicTocTask
    index: int
    clock: float
    budget: TurnBudget
    stats: TurnStats
    log_from: int = 0
    steps: int = 0
    invalid: int = 0
    done: bool = False
    correct: list[bool] = field(default_factory=list)
    called: list[bool] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    final_info: dict[str, Any] = field(default_factory=dict)


class TicTocView(EpisodeView):
    """The privileged view of a tictoc-v0 episode: segment = the question, and `plan(mode)`:
    `gold` calls exactly when the world says a call is needed, `rereads` calls every time,
    `stale` calls only the first time it is asked about a fact and answers from memory after,
    `idle` answers without calling."""

    world = "tictoc"
    done_text = "I cannot tell."
    mcp_server = None
    _env: TicTocEnv

    @property
    def segment(self) -> int:
        return self._env._current().index

    @property
    def agent_tools(self) -> tuple[ToolSpec, ...]:
        return tuple(TOOLS.values())

    def plan(self, mode: str) -> list[dict[str, Any]]:
        parse_choice(mode, PLAN_MODES, "plan mode")
        state = self._env._current()
        task, index = state.task, state.index
        question = task.questions[index]
        fact = question.fact
        if mode == "idle":
            return [{"kind": "say", "text": "I cannot check that right now."}]
        earlier = [q for q in task.questions[:index] if q.fact == fact]
        call = mode == "rereads" or (mode == "gold" and question.needed) or (mode == "stale" and not earlier)
        known_at = question.time if call else (earlier[0].time if mode == "stale" else question.time)
        steps: list[dict[str, Any]] = []
        if call:
            steps.append(
                {"kind": "read", "call": {"name": fact.tool, "arguments": {fact.argument: fact.key}}}
            )
        value = task.value_at(fact, known_at)
        return [*steps, {"kind": "say", "text": f"{fact.question[0].upper() + fact.question[1:]}: {value}."}]


class TicTocEnv(EpisodeSnapshots):
    """Questions about live facts while the clock moves (see the module docstring).

    Args:
        task: play this task id whatever the seed.
        scenario: draw tasks of this scenario only (travel, trading, clinic).
        turn_policy, turn_limit, remind_at, extension_turns, max_extensions: turn control per question.
        prompt: `compact` or `full` tool list.
    """

    def __init__(
        self,
        *,
        task: str | None = None,
        scenario: str | None = None,
        turn_policy: str = "fixed",
        turn_limit: int = 6,
        remind_at: Any = None,
        extension_turns: int = 4,
        max_extensions: int = 1,
        prompt: str = "compact",
        max_calls_per_message: int = 8,
        max_message_chars: int = 10_000,
        max_argument_chars: int = 4_000,
    ) -> None:
        self.spec: EnvSpec | None = None
        self.players: tuple[PlayerId, ...] = (AGENT,)
        if scenario is not None:
            parse_choice(scenario, SCENARIOS, "scenario")
        self.scenario = scenario
        self.task_id = task
        if task is not None:
            self._task(str(task))
        self.turns = TurnControl.from_options(
            turn_policy, turn_limit, remind_at, extension_turns, max_extensions
        )
        self.prompt = parse_choice(prompt, PROMPT_STYLES, "prompt")
        self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)
        self.seat = ToolSeat(
            self._execute,
            lambda: self._current().clock,
            max_calls_per_message=max_calls_per_message,
            max_message_chars=max_message_chars,
            max_argument_chars=max_argument_chars,
        )
        self._state: _Episode | None = None
        self._view: TicTocView | None = None

    @staticmethod
    def _task(task_id: str) -> TicTocTask:
        try:
            return tictoc_task(task_id)
        except ValueError as exc:
            raise EnvError(str(exc)) from None

    def _current(self) -> _Episode:
        if self._state is None:
            raise ValueError("tictoc env: call reset() before using the episode")
        return self._state

    def privileged_view(self, player: PlayerId) -> TicTocView:
        if self._view is None:
            self._view = TicTocView(self)
        return self._view

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        unknown = set(options or {}) - {"task"}
        if unknown:
            raise EnvError(f"tictoc env reset options are: task; got {', '.join(sorted(unknown))}")
        task_id = (options or {}).get("task", self.task_id)
        pool = [t for t in TASK_IDS if self.scenario is None or t.split("-")[1] == self.scenario]
        task = self._task(str(task_id) if task_id is not None else pool[(seed or 0) % len(pool)])
        self.db.execute("DELETE FROM tool_log")
        stats = TurnStats()
        first = task.questions[0].time
        self._state = _Episode(task, 0, first, TurnBudget(self.turns, stats), stats)
        self.seat.call_counter = 0
        system = Message(role="system", content=self._instructions(), time=first)
        return TimeStep(to_act=(AGENT,), observations={AGENT: [system, self._ask(self._state)]})

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        turn = self._begin_turn(actions, "tictoc env")
        state, handled, messages = turn.state, turn.handled, turn.messages
        answer: str | None = None
        if handled.invalid is None and handled.text is not None:
            if EXTEND_MARKER in handled.text:
                messages.append(self._note(state.budget.extend()))
            else:
                answer = handled.text
        if answer is None and state.budget.exhausted:
            answer = ""
            state.stats.out_of_turns += 1
            messages.append(self._note("Out of turns for this question."))
        elif turn.reminder is not None and answer is None:
            messages.append(self._note(turn.reminder))
        if answer is None:
            return TimeStep(to_act=(AGENT,), observations={AGENT: messages}, invalid_actions=turn.refused)
        self._grade(state, answer)
        if state.index + 1 < len(state.task.questions):
            state.index += 1
            messages.append(self._ask(state))
            return TimeStep(to_act=(AGENT,), observations={AGENT: messages}, invalid_actions=turn.refused)
        self._finish(state)
        return self._final_step(turn, observe_empty=True)

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        return None

    def render(self) -> str:
        state = self._current()
        head = (
            f"tictoc task {state.task.id} question {state.index + 1}/{len(state.task.questions)} "
            f"{clock_text(state.clock)}"
        )
        return "\n".join([head, *state.lines[-40:]])

    # snapshot, restore, state_hash: EpisodeSnapshots, over the in-memory database instead of a sandbox
    def close(self) -> None:
        self.db.close()

    def _store_image(self) -> bytes:
        return self.db.serialize()

    def _load_store_image(self, image: bytes) -> None:
        self.db.deserialize(image)

    def _store_hash(self) -> str:
        log = [dict(r) for r in self.db.execute("SELECT * FROM tool_log ORDER BY seq")]
        return hashlib.sha256(json.dumps(log).encode()).hexdigest()

    def _hash_fields(self, state: _Episode) -> list[Any]:
        return [
            state.task.id,
            state.index,
            state.steps,
            state.budget.used,
            state.correct,
            state.called,
            state.done,
        ]

    def sample_action(self, player: PlayerId, rng: random.Random) -> Action:
        """A random action for conformance checks: a call of the asked fact's tool, a junk call, an answer."""
        fact = self._current().task.questions[self._current().index].fact
        draw = rng.random()
        if draw < 0.35:
            call = {"name": fact.tool, "arguments": {fact.argument: fact.key}}
            return f"<tool_call>{json.dumps(call)}</tool_call>"
        if draw < 0.5:
            return '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
        return "It should be about the same as before."

    # ----- internals ------------------------------------------------------------------------------
    def _note(self, text: str) -> Message:
        return Message(role="user", content=text, name="env", time=self._current().clock)

    def _execute(self, name: str, arguments: Any) -> CallResult:
        state = self._current()
        context = TicTocContext(db=self.db, now=state.clock, timelines=state.task.timelines)
        return execute_call(TOOLS, context, name, arguments, via="env", max_result_chars=2_000)

    def _instructions(self) -> str:
        return (
            "You answer a user's questions about live information with the tools below. Each question "
            "comes with the time it is asked; time passes between questions, and facts change at their own "
            "pace. Call a tool when what you know may be out of date, and only then; answer each question in "
            "one short message (text, no tool call) that states the value.\n\n"
            + tools_prompt(list(TOOLS.values()), self.prompt)
        )

    def _ask(self, state: _Episode) -> Message:
        question = state.task.questions[state.index]
        state.clock = question.time
        state.budget = TurnBudget(self.turns, state.stats)
        state.stats.segments += 1
        state.log_from = int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM tool_log").fetchone()[0])
        return Message(
            role="user",
            content=f"[{clock_text(question.time)}] {question.text}",
            name="user",
            time=question.time,
        )

    def _grade(self, state: _Episode, answer: str) -> None:
        question = state.task.questions[state.index]
        fact = question.fact
        calls = self.db.execute(
            "SELECT arguments FROM tool_log WHERE seq > ? AND tool = ? AND ok = 1",
            (state.log_from, fact.tool),
        ).fetchall()
        called = any(
            str(json.loads(row[0]).get(fact.argument, "")).strip().upper() == fact.key for row in calls
        )
        value = state.task.value_at(fact, question.time)
        right = normalized(value) in normalized(answer)
        state.called.append(called)
        state.correct.append(right)
        state.lines.append(
            f"Q{state.index + 1} {fact.key} needed={question.needed} called={called} right={right}"
        )

    def _finish(self, state: _Episode) -> None:
        state.done = True
        levels: dict[str, dict[str, int]] = {
            level: {"questions": 0, "needed_made": 0, "needed_missed": 0, "redundant": 0, "skipped_ok": 0}
            for level in LEVELS
        }
        for question, called in zip(state.task.questions, state.called, strict=True):
            counts = levels[question.fact.level]
            counts["questions"] += 1
            key = (
                ("needed_made" if called else "needed_missed")
                if question.needed
                else ("redundant" if called else "skipped_ok")
            )
            counts[key] += 1
        for counts in levels.values():
            asked = counts["questions"]
            counts["alignment"] = (counts["needed_made"] + counts["skipped_ok"]) / asked if asked else None  # type: ignore[assignment]
        aligned = sum(c["needed_made"] + c["skipped_ok"] for c in levels.values())
        score = sum(state.correct) / len(state.correct)
        state.final_info = json_safe(
            {
                "world": "tictoc",
                "task_id": state.task.id,
                "scenario": state.task.scenario,
                "score": score,
                "strict_success": all(state.correct),
                "questions": len(state.correct),
                "answers_correct": sum(state.correct),
                "tictoc": {"levels": levels, "alignment": aligned / len(state.called)},
                "tool_calls": int(self.db.execute("SELECT COUNT(*) FROM tool_log").fetchone()[0]),
                "tool_errors": int(
                    self.db.execute("SELECT COUNT(*) FROM tool_log WHERE ok = 0").fetchone()[0]
                ),
                "refused_actions": state.invalid,
                "turn_control": self.turns.to_dict(),
                "turn_stats": state.stats.to_dict(),
                "returns": {AGENT: score},
            }
        )


def validate_tictoc(tasks: Sequence[str] | None) -> list[ValidationCheck]:
    """Every tictoc task: the gold plan answers everything with alignment 1.0; never re-calling
    gets some answer wrong; not calling at all fails; calling every time answers right."""
    env = TicTocEnv()
    checks = []
    try:
        for task_id in tasks or TASK_IDS:
            task = tictoc_task(task_id)
            infos = {mode: play_plan(env, {"task": task_id}, mode).info for mode in PLAN_MODES}
            check = null_check(task_id, infos["gold"]["score"], infos["idle"]["score"], subset=task.scenario)
            needed = sum(q.needed for q in task.questions)
            check.extra = {
                "questions": str(len(task.questions)),
                "needed": str(needed),
                "stale": f"{infos['stale']['score']:.2f}",
                "rereads align": f"{infos['rereads']['tictoc']['alignment']:.2f}",
            }
            if infos["gold"]["tictoc"]["alignment"] != 1.0:
                check.problems.append("the gold plan is not aligned with the world's labels")
            if infos["stale"]["score"] >= 1.0:
                check.problems.append("never re-calling answers everything right: no fact went stale")
            if infos["rereads"]["score"] < 1.0:
                check.problems.append("calling every time gets an answer wrong")
            if needed == len(task.questions):
                check.problems.append("every question needs a call: nothing tests skipping")
            checks.append(check)
    finally:
        env.close()
    return checks


__all__ = ["LEVELS", "TASK_IDS", "TOOLS", "TicTocEnv", "TicTocView", "tictoc_task", "validate_tictoc"]
