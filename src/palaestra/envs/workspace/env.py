"""`WorkspaceEnv` (`workspace-v0`): a coworker agent over several working days in a world that
changes on its own (ClawMark, docs/references.md §7).

One seat, `agent`, works for a person (the task's `me`) through the workspace's tools: files
(with .xlsx and PDF), mail, calendar and a knowledge base, all real state in the episode's
sandbox folder (`palaestra.envs.workspace.sandbox`).

- An episode is one task (the reset seed mod the number of tasks, within `scenario` if given, or
  `task=ID`). Each stage is a working day: the day's message (the date, the notifications of the
  loud changes since yesterday, the user's instructions, the turn budget) starts it; the agent
  works with tool calls and ends the day by writing `###DONE###` (or runs out of turns).
- When a day ends its checkers run on the services and give the day's score; then the world
  changes by the task's script (loud changes announced in the next day's message, silent ones
  not) and the next day starts. After the last day the final checkers run too.
- The reward, given at the end, is the task score: passed weight / total weight over every
  checker; strict success is every checker passing (reward 1.0). `info` holds the per-stage
  scores, every checker's verdict, the changes (loud/silent), the tool calls (in the env and over
  MCP) and what turn control did.
- Turn control (`palaestra.envs.workspace.turns`): `turn_policy`, `turn_limit` (per day),
  `remind_at`, `extension_turns`, `max_extensions`.
- The world clock starts at each day's start and moves a minute per turn; messages carry it.
- Other clients can act on the same world: the privileged view names an MCP server command for the
  episode's sandbox (`palaestra.envs.workspace.mcp_server`); calls made through it land in the
  sandbox's tool log and count like the env's own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.env import Action, PlayerId, TimeStep
from palaestra.core.messages import Message
from palaestra.core.registry import EnvError, EnvSpec
from palaestra.envs.service.toolkit import ToolSpec, clock_text, parse_time
from palaestra.envs.workspace.base import (
    AGENT,
    DONE_MARKER,
    PROMPT_STYLES,
    ToolSeat,
    json_safe,
    parse_choice,
    tools_prompt,
)
from palaestra.envs.workspace.checkers import CheckResult, WorldState, run_checks, score
from palaestra.envs.workspace.episodes import EpisodeSnapshots
from palaestra.envs.workspace.sandbox import (
    CallResult,
    Sandbox,
    WorkspaceContext,
    execute_call,
    set_world_values,
    tool_log,
)
from palaestra.envs.workspace.services import WORKSPACE_TOOLS
from palaestra.envs.workspace.tasks import Call, Task, load_tasks, task_by_id
from palaestra.envs.workspace.turns import EXTEND_MARKER, TurnBudget, TurnControl, TurnStats
from palaestra.envs.workspace.views import SandboxView, mcp_server_command
from palaestra.envs.workspace.world import apply_change, seed_image

TURN_SECONDS = 60.0
PLAN_MODES = ("gold", "stale", "rereads", "idle")


@dataclass(slots=True)
class _Episode:
    task: Task
    stage: int
    clock: float
    budget: TurnBudget
    stats: TurnStats
    results: list[CheckResult] = field(default_factory=list)
    stage_scores: list[float] = field(default_factory=list)
    steps: int = 0
    invalid: int = 0
    done: bool = False
    ended_by: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    final_info: dict[str, Any] = field(default_factory=dict)


class WorkspaceView(SandboxView):
    """What scripted seats of a workspace env may read (its `privileged_view`): a live view.

    Attributes:
        env_name: the env id, for messages.
        world: `workspace`.
        segment: the current stage (working day), 0-based; a new value means a new day.
        agent_tools: the tool specs (for native tool calling).
        done_text, extend_text: what ends a day and what asks for more turns.
        turns_left_announced: the turns left as the env last told the agent (None: not told).
        can_extend: whether an extension request would be granted now.
        mcp_server: `{command, args}` starting an MCP server on this episode's sandbox.

    `plan(mode)` gives the current day's steps for a scripted agent: `gold` (the task's gold
    calls), `stale` (the calls of an agent that never re-reads what it read on an earlier day),
    `rereads` (gold, with the day's reads repeated before every write) or `idle` (nothing);
    each step is `{kind: read|refresh|write|say, call?: {name, arguments}, text?}`.
    """

    world = "workspace"
    done_text = f"That is all for today. {DONE_MARKER}"
    _env: WorkspaceEnv

    @property
    def segment(self) -> int:
        return self._env._current().stage

    @property
    def agent_tools(self) -> tuple[ToolSpec, ...]:
        return tuple(self._env.tools.values())

    def plan(self, mode: str) -> list[dict[str, Any]]:
        parse_choice(mode, PLAN_MODES, "plan mode")
        state = self._env._current()
        steps = stage_plan(state.task, state.stage, mode, self._env.tools)
        return [*steps, {"kind": "say", "text": self.done_text}]


def stage_plan(task: Task, stage: int, mode: str, tools: Mapping[str, ToolSpec]) -> list[dict[str, Any]]:
    """A scripted agent's calls for one day of a task (see `WorkspaceView.plan`)."""
    day = task.stages[stage]

    def step(call: Call, kind: str | None = None) -> dict[str, Any]:
        spec = tools.get(call.name)
        return {
            "kind": kind or ("write" if spec is not None and spec.write else "read"),
            "call": call.to_dict(),
        }

    if mode == "idle":
        return []
    if mode == "gold":
        return [step(call) for call in day.gold]
    if mode == "stale":
        if day.stale is not None:
            return [step(call) for call in day.stale]
        seen = {
            json.dumps(c.to_dict(), sort_keys=True) for earlier in task.stages[:stage] for c in earlier.gold
        }
        return [
            step(call)
            for call in day.gold
            if step(call)["kind"] == "write" or json.dumps(call.to_dict(), sort_keys=True) not in seen
        ]
    refresh = day.refresh or [c for c in day.gold if step(c)["kind"] == "read"]
    steps: list[dict[str, Any]] = []
    for call in day.gold:
        if step(call)["kind"] == "write":
            steps += [step(read, "refresh") for read in refresh]
        steps.append(step(call))
    return steps


class WorkspaceEnv(EpisodeSnapshots):
    """Multi-day coworker tasks over the workspace services (see the module docstring).

    Args:
        task: play this task id whatever the seed.
        scenario: draw tasks from this scenario only (`expenses`, `scheduling`, ...).
        turn_policy, turn_limit, remind_at, extension_turns, max_extensions: turn control per day
            (`palaestra.envs.workspace.turns`).
        prompt: `compact` (a line per tool) or `full` (JSON schemas) in the instructions.
        sandbox_dir: keep the sandbox in this folder (emptied at each reset) instead of a fresh
            temporary one.
        max_calls_per_message, max_message_chars, max_argument_chars: limits on one action.
    """

    def __init__(
        self,
        *,
        task: str | None = None,
        scenario: str | None = None,
        turn_policy: str = "fixed",
        turn_limit: int = 40,
        remind_at: Any = None,
        extension_turns: int = 10,
        max_extensions: int = 2,
        prompt: str = "compact",
        sandbox_dir: str | None = None,
        max_calls_per_message: int = 8,
        max_message_chars: int = 10_000,
        max_argument_chars: int = 4_000,
    ) -> None:
        self.spec: EnvSpec | None = None
        self.players: tuple[PlayerId, ...] = (AGENT,)
        self.tasks = load_tasks()
        self.task_id = task
        if task is not None:
            task_by_id(str(task))
        self.scenario = scenario
        self._pool(scenario)
        self.turns = TurnControl.from_options(
            turn_policy, turn_limit, remind_at, extension_turns, max_extensions
        )
        self.prompt = parse_choice(prompt, PROMPT_STYLES, "prompt")
        self.tools = dict(WORKSPACE_TOOLS)
        self.sandbox = Sandbox(sandbox_dir)
        self.seat = ToolSeat(
            self._execute,
            lambda: self._current().clock,
            max_calls_per_message=max_calls_per_message,
            max_message_chars=max_message_chars,
            max_argument_chars=max_argument_chars,
        )
        self._state: _Episode | None = None
        self._view: WorkspaceView | None = None

    def _pool(self, scenario: str | None) -> list[Task]:
        if scenario is None:
            return list(self.tasks)
        chosen = [task for task in self.tasks if task.scenario == scenario]
        if not chosen:
            known = ", ".join(dict.fromkeys(task.scenario for task in self.tasks))
            raise EnvError(f"no workspace scenario {scenario!r}; scenarios: {known}")
        return chosen

    def select_task(self, seed: int | None, options: Mapping[str, Any] | None = None) -> Task:
        options = options or {}
        task_id = options.get("task", self.task_id)
        if task_id is not None:
            return task_by_id(str(task_id))
        pool = self._pool(options.get("scenario", self.scenario))
        return pool[(seed or 0) % len(pool)]

    def _current(self) -> _Episode:
        if self._state is None:
            raise ValueError("workspace env: call reset() before using the episode")
        return self._state

    def privileged_view(self, player: PlayerId) -> WorkspaceView:
        if self._view is None:
            self._view = WorkspaceView(self)
        return self._view

    @property
    def task(self) -> Task:
        return self._current().task

    def world_state(self) -> WorldState:
        """What checkers read (for tests and tools that inspect a finished episode)."""
        return WorldState(self.sandbox.connection(), self.sandbox.files, self._current().task.me)

    # ----- Env API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        unknown = set(options or {}) - {"task", "scenario"}
        if unknown:
            raise EnvError(f"workspace reset options are task and scenario; got {', '.join(sorted(unknown))}")
        task = self.select_task(seed, options)
        files, image = seed_image(task)
        self.sandbox.fill(files, image, {"world": "workspace", "task": task.id})
        stats = TurnStats()
        self._state = _Episode(
            task=task,
            stage=0,
            clock=parse_time(task.stages[0].day),
            budget=TurnBudget(self.turns, stats),
            stats=stats,
        )
        self.seat.call_counter = 0
        system = Message(role="system", content=self._instructions(task), time=self._state.clock)
        return TimeStep(to_act=(AGENT,), observations={AGENT: [system, self._start_stage(self._state)]})

    def step(self, actions: Mapping[PlayerId, Action]) -> TimeStep:
        turn = self._begin_turn(actions, "workspace env")
        state, handled, messages = turn.state, turn.handled, turn.messages
        end_day = False
        if handled.invalid is not None:
            pass  # refused: `_begin_turn` counted it; the budget still spent the turn
        elif handled.text is not None:
            state.lines.append(f"agent: {handled.text[:200]}")
            if DONE_MARKER in handled.text:
                end_day = True
                state.ended_by.append("done")
            elif EXTEND_MARKER in handled.text:
                messages.append(self._note(state.budget.extend()))
            else:
                messages.append(
                    self._note(f"(noted) Continue with tools; write {DONE_MARKER} when today's work is done.")
                )
        else:
            self._log_calls(turn)
        if not end_day and state.budget.exhausted:
            end_day = True
            state.ended_by.append("out_of_turns")
            state.stats.out_of_turns += 1
            messages.append(self._note("You are out of turns for today."))
        elif turn.reminder is not None and not end_day:
            messages.append(self._note(turn.reminder))
        state.clock += TURN_SECONDS
        set_world_values(self.sandbox.connection(), {"clock": state.clock})
        if end_day:
            self._end_stage(state)
            if state.done:
                return self._final_step(turn)
            messages.append(self._start_stage(state))
        return TimeStep(to_act=(AGENT,), observations={AGENT: messages}, invalid_actions=turn.refused)

    def legal_actions(self, player: PlayerId) -> Sequence[str] | None:
        return None

    def render(self) -> str:
        state = self._current()
        head = (
            f"workspace task {state.task.id} [{state.task.scenario}] day "
            f"{state.stage + 1}/{len(state.task.stages)}"
            f"  clock {clock_text(state.clock)}  turns {state.budget.used}/{state.budget.limit}"
        )
        tail = [f"ended: score {state.final_info.get('score')}"] if state.done else []
        return "\n".join([head, *state.lines[-40:], *tail])

    # ----- snapshots (close, snapshot, restore, state_hash: EpisodeSnapshots) ----------------------
    def _hash_fields(self, state: _Episode) -> list[Any]:
        return [
            state.task.id,
            state.stage,
            state.clock,
            state.steps,
            state.budget.used,
            state.done,
            state.lines,
            [r.to_dict() for r in state.results],
        ]

    def sample_action(self, player: PlayerId, rng: random.Random) -> Action:
        """A random action for conformance checks: reads, junk calls, text, the end of a day."""
        draw = rng.random()
        if draw < 0.2:
            return f"Done. {DONE_MARKER}"
        if draw < 0.5:
            name = rng.choice(["list_mail", "list_files", "search_kb"])
            arguments = {"query": "budget"} if name == "search_kb" else {}
            return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"
        if draw < 0.7:
            return f'<tool_call>{{"name": "{rng.choice(list(self.tools))}", "arguments": {{}}}}</tool_call>'
        if draw < 0.8:
            return '<tool_call>{"name": oops</tool_call>'
        return "Let me think about today's work."

    # ----- internals ------------------------------------------------------------------------------
    def _note(self, text: str) -> Message:
        return Message(role="user", content=text, name="env", time=self._current().clock)

    def _context(self, state: _Episode) -> WorkspaceContext:
        return WorkspaceContext(
            db=self.sandbox.connection(),
            now=state.clock,
            root=self.sandbox.files,
            me=state.task.me,
            stage=state.stage,
        )

    def _execute(self, name: str, arguments: Any) -> CallResult:
        return execute_call(self.tools, self._context(self._current()), name, arguments, via="env")

    def _instructions(self, task: Task) -> str:
        days = len(task.stages)
        return (
            f"You are the work assistant of {task.name} <{task.me}>. You act for them on their files "
            "(including .xlsx spreadsheets and PDFs), their mail, their calendar and the team's knowledge "
            "base, "
            f"through the tools below. The work runs over {days} working day{'s' if days > 1 else ''}; each "
            f"day "
            "starts with a message from them. The world moves between days: mail arrives, meetings move, "
            "records and files are edited, and not every change is announced, so check what you rely on. "
            f"When the day's work is done, write "
            f"{DONE_MARKER}.\n\n{tools_prompt(list(self.tools.values()), self.prompt)}"
        )

    def _start_stage(self, state: _Episode) -> Message:
        task = state.task
        day = task.stages[state.stage]
        state.clock = parse_time(day.day)
        db = self.sandbox.connection()
        notes = []
        for change in day.changes:
            for op in change.ops:
                apply_change(op, db, self.sandbox.files, task, state.stage)
            if change.kind == "loud":
                notes.append(f"- {change.note}")
        set_world_values(db, {"clock": state.clock, "stage": state.stage, "me": task.me})
        state.budget = TurnBudget(self.turns, state.stats)
        state.stats.segments += 1
        parts = [f"[{clock_text(state.clock)}] Day {state.stage + 1} of {len(task.stages)}."]
        if notes:
            parts.append("Notifications since yesterday:\n" + "\n".join(notes))
        parts.append(day.message)
        parts.append(self.turns.describe("today"))
        state.lines.append(f"--- day {state.stage + 1}: {len(day.changes)} change(s)")
        return Message(role="user", content="\n\n".join(parts), name=task.name, time=state.clock)

    def _end_stage(self, state: _Episode) -> None:
        task = state.task
        world = self.world_state()
        results = run_checks(world, task.checks_of(state.stage), state.stage)
        state.results += results
        state.stage_scores.append(score(results))
        if state.stage + 1 < len(task.stages):
            state.stage += 1
            return
        final = run_checks(world, task.final_checks, None)
        state.results += final
        state.done = True
        self._finish(state, final)

    def _finish(self, state: _Episode, final: list[CheckResult]) -> None:
        task = state.task
        total = score(state.results)
        calls = tool_log(self.sandbox.connection())
        changes = task.changes
        first_change = next((i for i, stage in enumerate(task.stages) if stage.changes), None)
        state.final_info = json_safe(
            {
                "world": "workspace",
                "task_id": task.id,
                "scenario": task.scenario,
                "score": total,
                "strict_success": all(r.passed for r in state.results),
                "stage_scores": state.stage_scores,
                "final_score": score(final) if final else None,
                "checks": [r.to_dict() for r in state.results],
                "failed_checks": [f"{r.id}: {r.text}" for r in state.results if not r.passed],
                "changes": {
                    "loud": sum(c.kind == "loud" for c in changes),
                    "silent": sum(c.kind == "silent" for c in changes),
                },
                "first_change_stage": first_change,
                "tool_calls": len(calls),
                "tool_errors": sum(1 for c in calls if not c["ok"]),
                "tool_calls_via_mcp": sum(1 for c in calls if c["via"] == "mcp"),
                "writes": sum(1 for c in calls if c["write"]),
                "refused_actions": state.invalid,
                "ended_by": state.ended_by,
                "turn_control": self.turns.to_dict(),
                "turn_stats": state.stats.to_dict(),
                "returns": {AGENT: total},
            }
        )


__all__ = ["PLAN_MODES", "WorkspaceEnv", "WorkspaceView", "mcp_server_command", "stage_plan"]
