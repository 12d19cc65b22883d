"""`validate_domain`: model-free self-checks of a service domain (verifiers-style `validate`).

For every task:
1. its gold actions, run through the real tools on a fresh database, all succeed;
2. the oracle (gold actions, then the required outputs) with the scripted customer scores 1.0
   through the real env;
3. replaying the writes that episode recorded, at their recorded clock, gives the same database
   (tools are deterministic, so grading may hash the episode's own database), and the hash
   graded from the tables the episode wrote equals the hash of the whole database;
4. an agent that only ever says "Okay." scores 0 (the task checks something).

It also warns (without failing) about required outputs that appear in no tool result of the
oracle's episode: values the agent must work out itself (a sum, a deadline), which are worth a
second look by the task's author.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from palaestra.core.env import Action, PlayerId, TimeStep
from palaestra.core.messages import Message
from palaestra.envs.service.database import canonical_hash
from palaestra.envs.service.domain import Domain, Task, load_domain
from palaestra.envs.service.env import AGENT, USER, ServiceEnv
from palaestra.envs.service.grading import (
    GoldActionError,
    SaidText,
    WriteCall,
    missing_outputs,
    replay,
    replay_gold,
)
from palaestra.envs.service.scripts import Oracle, ScriptedUser


class Policy(Protocol):
    def act(self, messages: Sequence[Message]) -> Action: ...


class _Okay:
    def act(self, messages: Sequence[Message]) -> Action:
        return "Okay."


@dataclass(slots=True)
class TaskCheck:
    """The outcome of validating one task.

    Fields:
        task_id, subset: which task.
        gold_actions: how many gold actions it has (writes among them in `gold_writes`).
        oracle_reward: what the oracle with the scripted customer scored.
        null_reward: what an agent that only says "Okay." scored.
        problems: what is wrong, one line each (empty: the task is valid).
        warnings: things worth a look that do not make the task invalid.
    """

    task_id: str
    subset: str
    gold_actions: int
    gold_writes: int
    oracle_reward: float | None = None
    null_reward: float | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class ValidationReport:
    """Every task's check for one domain."""

    domain: str
    path: Path
    checks: list[TaskCheck]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[TaskCheck]:
        return [check for check in self.checks if not check.ok]


def play(env: ServiceEnv, task: Task, policies: Mapping[PlayerId, Policy]) -> TimeStep:
    """Play one episode of `task` synchronously with per-seat policies; returns the last step."""
    step = env.reset(options={"task": task.id})
    pending: dict[PlayerId, list[Message]] = {AGENT: [], USER: []}
    while True:
        for player, messages in step.observations.items():
            pending[player].extend(messages)
        if step.done:
            return step
        player = step.to_act[0]
        seen, pending[player] = pending[player], []
        step = env.step({player: policies[player].act(seen)})


def check_task(
    domain: Domain,
    task: Task,
    env: ServiceEnv,
    *,
    oracle: Callable[[Task], Policy] = Oracle,
    user: Callable[[Task], Policy] = ScriptedUser,
) -> TaskCheck:
    """Validate one task (see the module docstring)."""
    writes = sum(1 for action in task.gold_actions if domain.tools[action.name].write)
    check = TaskCheck(task.id, task.subset, len(task.gold_actions), writes)
    try:
        replay_gold(domain, task).close()
    except GoldActionError as exc:
        check.problems.append(str(exc))
        return check
    final = play(env, task, {AGENT: oracle(task), USER: user(task)})
    info: dict[str, Any] = dict(final.info)
    check.oracle_reward = float(info.get("reward", 0.0))
    if check.oracle_reward != 1.0:
        breakdown = info.get("reward_breakdown", {})
        reasons = []
        if not breakdown.get("db_match", False):
            reasons.append("end state differs from the gold end state")
        if breakdown.get("outputs_missing"):
            reasons.append(f"outputs not said: {breakdown['outputs_missing']}")
        if breakdown.get("outputs_leaked"):
            reasons.append(f"forbidden outputs said: {breakdown['outputs_leaked']}")
        if breakdown.get("declined") is False:
            reasons.append("no decline phrase (check the domain's decline_phrases)")
        reasons.append(f"ended by {info.get('termination')}")
        tool_errors = [
            m.content for m in env.transcript if m.role == "tool" and (m.content or "").startswith("Error")
        ]
        if tool_errors:
            reasons.append(f"tool errors: {tool_errors[:3]}")
        check.problems.append("oracle scores " + f"{check.oracle_reward:g}: " + "; ".join(reasons))
    results = SaidText([m.content or "" for m in env.transcript if m.role == "tool"])
    for output in missing_outputs(task.outputs, results):
        check.warnings.append(f"output {output!r} is in no tool result: the agent must derive it")
    live_hash = canonical_hash(env.db)
    graded_hash = info.get("reward_breakdown", {}).get("db_hash")
    if graded_hash != live_hash:
        check.problems.append(
            "the end-state hash graded from the tables the episode wrote differs from the hash of the "
            "whole database: a tool changed a table without an INSERT, UPDATE or DELETE naming it"
        )
    recorded = [WriteCall(**call) for call in info.get("write_calls", [])]
    replayed, replay_errors = replay(domain, recorded, strict=False)
    try:
        if replay_errors or canonical_hash(replayed) != live_hash:
            check.problems.append(
                "replaying the episode's writes gives another database: a tool is not deterministic "
                f"(it must depend only on the database, its arguments and ctx.now) {replay_errors[:2]}"
            )
    finally:
        replayed.close()
    final = play(env, task, {AGENT: _Okay(), USER: user(task)})
    check.null_reward = float(final.info.get("reward", 0.0))
    if check.null_reward != 0.0:
        check.problems.append(
            "an agent that only says 'Okay.' scores 1: give the task a write action, an output to "
            "communicate or expect_decline"
        )
    return check


def validate_domain(domain: str | Path | Domain, *, tasks: Sequence[str] | None = None) -> ValidationReport:
    """Validate every task of a domain (or only `tasks`, by id)."""
    loaded = domain if isinstance(domain, Domain) else load_domain(domain, recheck=True)
    env = ServiceEnv(loaded, max_steps=400)
    try:
        chosen = loaded.tasks if tasks is None else [loaded.task(task_id) for task_id in tasks]
        checks = [check_task(loaded, task, env) for task in chosen]
    finally:
        env.close()
    return ValidationReport(domain=loaded.name, path=loaded.path, checks=checks)
