"""`CodeEnv` (`code-v0`): a task on a generated Python repository, decided by hidden tests
(LoCoBench-Agent's comprehension and efficiency over repository sizes).

One seat, `agent`. The repository (`palaestra.envs.workspace.code_repos`: a few files to a few
hundred) is laid out in the episode's sandbox; the task message says what to do: fix a bug, add
a feature, or answer an architecture question. Tools (`palaestra.envs.workspace.code_tools`):
list_files, read_file (line ranges), search, write_file, patch_file, run_tests.

- The agent finishes by writing `###DONE###` (an explanation's answer goes in that message), or
  runs out of turns (turn control as in every workspace env: `turn_policy`, `turn_limit`, ...).
- Then the hidden tests run (fix, feature) in the sandbox under the run limits (`cpu_seconds`,
  `memory_mb`, `wall_seconds`), or the answer is checked against the repository (explain).
  Reward 1.0 when every hidden test passes (or the answer is right), else 0.
- `info` holds the metrics by repository size: success, tool calls, approximate tokens read
  (characters of what the reading tools returned / 4), redundant reads (line ranges already read
  since the file last changed), edits, edits reverted (back to an earlier version of the file),
  test runs, and turn control's counts.

Tasks: `code-SIZE-KIND-N` for sizes tiny, small, medium, large, kinds fix, feature, explain and
N 1-2 (24 tasks); the reset seed picks one (within `size` and `kind` when given), or `task=ID`.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.env import Action, PlayerId, TimeStep
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.core.validation import ValidationCheck, null_check
from palaestra.envs.service.toolkit import ToolSpec, clock_text, parse_time, tool_spec
from palaestra.envs.workspace import code_tools
from palaestra.envs.workspace.base import (
    AGENT,
    DONE_MARKER,
    PROMPT_STYLES,
    ToolSeat,
    json_safe,
    parse_choice,
    tools_prompt,
)
from palaestra.envs.workspace.code_repos import KINDS, SIZES, CodeTask, check_answer, code_task, task_ids
from palaestra.envs.workspace.episodes import EpisodeSnapshots
from palaestra.envs.workspace.limits import Limits
from palaestra.envs.workspace.plans import play_plan
from palaestra.envs.workspace.sandbox import (
    CallResult,
    Sandbox,
    WorkspaceContext,
    empty_database_image,
    execute_call,
    set_world_values,
    tool_log,
)
from palaestra.envs.workspace.turns import EXTEND_MARKER, TurnBudget, TurnControl, TurnStats
from palaestra.envs.workspace.views import SandboxView

CODE_TOOLS: dict[str, ToolSpec] = {
    spec.name: spec for fn in code_tools.TOOLS if (spec := tool_spec(fn)) is not None
}
READ_TOOLS = frozenset({"list_files", "read_file", "search"})
WRITE_TOOLS = frozenset({"write_file", "patch_file"})
START = "2024-06-10T09:00:00Z"
CODE_PLAN_MODES = ("gold", "stale", "rereads", "idle")


@dataclass(slots=True)
class _Episode:
    task: CodeTask
    clock: float
    budget: TurnBudget
    stats: TurnStats
    steps: int = 0
    invalid: int = 0
    done: bool = False
    answer: str = ""
    lines: list[str] = field(default_factory=list)
    final_info: dict[str, Any] = field(default_factory=dict)


class CodeView(SandboxView):
    """The privileged view of a code-v0 episode (the same shape as `WorkspaceView`): one segment,
    `plan(mode)` for scripted agents (`gold`: the gold patch or answer; `stale`: the same, there is
    no outside change; `rereads`: gold with the file read again before and after each edit;
    `idle`: finish at once, the empty patch), the tools, turn counts and the MCP server command."""

    world = "code"
    segment = 0
    done_text = f"Done. {DONE_MARKER}"
    _env: CodeEnv

    @property
    def agent_tools(self) -> tuple[ToolSpec, ...]:
        return tuple(CODE_TOOLS.values())

    def plan(self, mode: str) -> list[dict[str, Any]]:
        parse_choice(mode, CODE_PLAN_MODES, "plan mode")
        task = self._env._current().task
        if mode == "idle":
            return [{"kind": "say", "text": f"I made no changes. {DONE_MARKER}"}]
        steps: list[dict[str, Any]] = []
        last_read: dict[str, Any] | None = None
        for call in task.gold:
            kind = "write" if call["name"] in WRITE_TOOLS else "read"
            if mode == "rereads" and kind == "write" and last_read is not None:
                steps.append({"kind": "refresh", "call": last_read})
            steps.append({"kind": kind, "call": call})
            if call["name"] == "read_file":
                last_read = call
            if mode == "rereads" and kind == "write" and last_read is not None:
                steps.append({"kind": "refresh", "call": last_read})
        return [*steps, {"kind": "say", "text": f"{task.gold_answer} {DONE_MARKER}"}]


class CodeEnv(EpisodeSnapshots):
    """A generated repository and one task on it (see the module docstring).

    Args:
        task: play this task id whatever the seed.
        size: draw tasks of this repository size only (tiny, small, medium, large).
        kind: draw tasks of this kind only (fix, feature, explain).
        turn_policy, turn_limit, remind_at, extension_turns, max_extensions: turn control.
        cpu_seconds, memory_mb, wall_seconds: limits of every test run.
        prompt: `compact` or `full` tool list.
        sandbox_dir: keep the sandbox in this folder instead of a fresh temporary one.
    """

    def __init__(
        self,
        *,
        task: str | None = None,
        size: str | None = None,
        kind: str | None = None,
        turn_policy: str = "fixed",
        turn_limit: int = 30,
        remind_at: Any = None,
        extension_turns: int = 10,
        max_extensions: int = 2,
        cpu_seconds: int = 10,
        memory_mb: int = 512,
        wall_seconds: float = 20.0,
        prompt: str = "compact",
        sandbox_dir: str | None = None,
        max_calls_per_message: int = 8,
        max_message_chars: int = 10_000,
        max_argument_chars: int = 4_000,
    ) -> None:
        self.spec: EnvSpec | None = None
        self.players: tuple[PlayerId, ...] = (AGENT,)
        if size is not None:
            parse_choice(size, tuple(SIZES), "size")
        if kind is not None:
            parse_choice(kind, KINDS, "kind")
        self.size, self.kind = size, kind
        self.task_id = task
        if task is not None:
            self._task(str(task))
        self.turns = TurnControl.from_options(
            turn_policy, turn_limit, remind_at, extension_turns, max_extensions
        )
        self.limits = Limits(cpu_seconds=cpu_seconds, memory_mb=memory_mb, wall_seconds=float(wall_seconds))
        self.prompt = parse_choice(prompt, PROMPT_STYLES, "prompt")
        self.sandbox = Sandbox(sandbox_dir)
        self.seat = ToolSeat(
            self._execute,
            lambda: self._current().clock,
            max_calls_per_message=max_calls_per_message,
            max_message_chars=max_message_chars,
            max_argument_chars=max_argument_chars,
        )
        self._state: _Episode | None = None
        self._view: CodeView | None = None
        self._image = empty_database_image()

    @staticmethod
    def _task(task_id: str) -> CodeTask:
        try:
            return code_task(task_id)
        except ValueError as exc:
            raise EnvError(str(exc)) from None

    def pool(self) -> list[str]:
        return [
            t
            for t in task_ids()
            if (self.size is None or t.split("-")[1] == self.size)
            and (self.kind is None or t.split("-")[2] == self.kind)
        ]

    def _current(self) -> _Episode:
        if self._state is None:
            raise ValueError("code env: call reset() before using the episode")
        return self._state

    def privileged_view(self, player: PlayerId) -> CodeView:
        if self._view is None:
            self._view = CodeView(self)
        return self._view

    # ----- Env API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        unknown = set(options or {}) - {"task"}
        if unknown:
            raise EnvError(f"code env reset options are: task; got {', '.join(sorted(unknown))}")
        task_id = (options or {}).get("task", self.task_id)
        pool = self.pool()
        task = self._task(str(task_id) if task_id is not None else pool[(seed or 0) % len(pool)])
        files = {path: text.encode() for path, text in task.repository.items()}
        self.sandbox.fill(files, self._image, {"world": "code", "task": task.id})
        clock = parse_time(START)
        set_world_values(
            self.sandbox.connection(),
            {
                "clock": clock,
                "stage": 0,
                "me": "",
                "cpu_seconds": self.limits.cpu_seconds,
                "memory_mb": self.limits.memory_mb,
                "wall_seconds": self.limits.wall_seconds,
            },
        )
        stats = TurnStats(segments=1)
        self._state = _Episode(task=task, clock=clock, budget=TurnBudget(self.turns, stats), stats=stats)
        self.seat.call_counter = 0
        system = Message(role="system", content=self._instructions(), time=clock)
        issue = (
            f"[{clock_text(clock)}] Repository: {len(task.repository)} files.\n\n{task.issue}\n\n"
            f"{self.turns.describe('this task')} When you are done, write {DONE_MARKER} "
            "(with your answer in the same message when the task asks a question)."
        )
        return TimeStep(
            to_act=(AGENT,), observations={AGENT: [system, Message(role="user", content=issue, time=clock)]}
        )

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        turn = self._begin_turn(actions, "code env")
        state, handled, messages = turn.state, turn.handled, turn.messages
        finished = False
        if handled.invalid is not None:
            pass  # refused: `_begin_turn` counted it; the budget still spent the turn
        elif handled.text is not None:
            state.lines.append(f"agent: {handled.text[:200]}")
            if DONE_MARKER in handled.text:
                finished, state.answer = True, handled.text
            elif EXTEND_MARKER in handled.text:
                messages.append(self._note(state.budget.extend()))
            else:
                messages.append(
                    self._note(f"(noted) Continue with tools; write {DONE_MARKER} when you are done.")
                )
        else:
            self._log_calls(turn)
        if not finished and state.budget.exhausted:
            finished = True
            state.stats.out_of_turns += 1
            messages.append(self._note("You are out of turns."))
        elif turn.reminder is not None and not finished:
            messages.append(self._note(turn.reminder))
        state.clock += 60.0
        set_world_values(self.sandbox.connection(), {"clock": state.clock})
        if not finished:
            return TimeStep(to_act=(AGENT,), observations={AGENT: messages}, invalid_actions=turn.refused)
        self._finish(state)
        return self._final_step(turn)

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        return None

    def render(self) -> str:
        state = self._current()
        head = f"code task {state.task.id}  turns {state.budget.used}/{state.budget.limit}"
        tail = [f"ended: score {state.final_info.get('score')}"] if state.done else []
        return "\n".join([head, *state.lines[-40:], *tail])

    # close, snapshot, restore, state_hash: EpisodeSnapshots
    def _hash_fields(self, state: _Episode) -> list[Any]:
        return [state.task.id, state.clock, state.steps, state.budget.used, state.done, state.lines]

    def sample_action(self, player: PlayerId, rng: random.Random) -> Action:
        """A random action for conformance checks: reads, junk calls, text, finishing."""
        draw = rng.random()
        if draw < 0.15:
            return f"Done. {DONE_MARKER}"
        if draw < 0.5:
            call = rng.choice(
                [
                    {"name": "list_files", "arguments": {}},
                    {"name": "search", "arguments": {"pattern": "def "}},
                    {"name": "read_file", "arguments": {"path": "README.md"}},
                ]
            )
            return f"<tool_call>{json.dumps(call)}</tool_call>"
        if draw < 0.7:
            return '<tool_call>{"name": "patch_file", "arguments": {"path": "README.md"}}</tool_call>'
        return "Looking at the repository."

    # ----- internals ------------------------------------------------------------------------------
    def _note(self, text: str) -> Message:
        return Message(role="user", content=text, name="env", time=self._current().clock)

    def _execute(self, name: str, arguments: Any) -> CallResult:
        context = WorkspaceContext(
            db=self.sandbox.connection(), now=self._current().clock, root=self.sandbox.files
        )
        return execute_call(CODE_TOOLS, context, name, arguments, via="env")

    def _instructions(self) -> str:
        return (
            "You work on a Python repository with the tools below: list and read files (by line ranges), "
            "search, "
            "write and patch files, run the tests. Hidden tests decide whether a change is right; a question "
            "is "
            f"judged by your answer. Write {DONE_MARKER} when you are done.\n\n"
            + tools_prompt(list(CODE_TOOLS.values()), self.prompt)
        )

    def grade(self, state: _Episode) -> tuple[bool, dict[str, Any]]:
        task = state.task
        if task.kind == "explain":
            right, detail = check_answer(task.answer, state.answer)
            return right, {"answer_check": detail}
        hidden = f".hidden-{secrets.token_hex(6)}"
        folder = self.sandbox.files / hidden
        folder.mkdir()
        for name, text in task.hidden_tests.items():
            (folder / name).write_text(text)
        try:
            result = code_tools.run_test_folder(self.sandbox.files, hidden, self.limits)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        passed = bool(result["passed"]) and not result["failed"]
        return passed, {
            "hidden_passed": len(result["passed"]),
            "hidden_failed": len(result["failed"]),
            "hidden_failures": [f["test"] + ": " + f["error"][:200] for f in result["failed"]][:5],
            "hidden_limit": result["limit"],
        }

    def _finish(self, state: _Episode) -> None:
        state.done = True
        task = state.task
        passed, details = self.grade(state)
        db = self.sandbox.connection()
        calls = tool_log(db)
        read_chars = sum(c["result_chars"] for c in calls if c["tool"] in READ_TOOLS and c["ok"])
        edits = db.execute("SELECT COUNT(*), COALESCE(SUM(reverted), 0) FROM file_version").fetchone()
        originals = db.execute("SELECT COUNT(DISTINCT path) FROM file_version").fetchone()[0]
        score = 1.0 if passed else 0.0
        state.final_info = json_safe(
            {
                "world": "code",
                "task_id": task.id,
                "size": task.size,
                "files": len(task.repository),
                "kind": task.kind,
                "score": score,
                "strict_success": passed,
                **details,
                "tool_calls": len(calls),
                "tool_errors": sum(1 for c in calls if not c["ok"]),
                "tool_calls_via_mcp": sum(1 for c in calls if c["via"] == "mcp"),
                "tokens_read": round(read_chars / 4),
                "reads": sum(1 for c in calls if c["tool"] == "read_file" and c["ok"]),
                "redundant_reads": db.execute(
                    "SELECT COUNT(*) FROM code_read WHERE redundant = 1"
                ).fetchone()[0],
                "edits": int(edits[0]) - originals,
                "edits_reverted": int(edits[1]),
                "test_runs": sum(1 for c in calls if c["tool"] == "run_tests"),
                "refused_actions": state.invalid,
                "turn_control": self.turns.to_dict(),
                "turn_stats": state.stats.to_dict(),
                "returns": {AGENT: score},
            }
        )


def validate_code(tasks: Sequence[str] | None) -> list[ValidationCheck]:
    """Every code task: the gold plan passes (hidden tests or answer), the empty patch fails, and
    the visible tests pass after the gold plan."""
    env = CodeEnv(turn_limit=100)
    checks = []
    try:
        for task_id in tasks or task_ids():
            gold = play_plan(env, {"task": task_id}, "gold").info
            idle = play_plan(env, {"task": task_id}, "idle").info
            task = code_task(task_id)
            check = null_check(task_id, gold["score"], idle["score"], subset=f"{task.size}/{task.kind}")
            check.extra = {"files": str(len(task.repository)), "calls": str(gold["tool_calls"])}
            if gold["score"] < 1.0:
                check.problems.append(
                    f"gold fails: {gold.get('hidden_failures') or gold.get('answer_check')}"
                )
            visible = code_tools.run_test_folder(env.sandbox.files, "tests", env.limits)
            if visible["failed"] or not visible["passed"]:
                check.problems.append(f"visible tests fail after the gold plan: {visible['failed'][:2]}")
            checks.append(check)
    finally:
        env.close()
    return checks


__all__ = ["CODE_TOOLS", "CodeEnv", "CodeView", "validate_code"]
