"""Turn control in the workspace worlds: a fixed limit, reminders, extensions on request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from palaestra.agents.base import AgentView
from palaestra.agents.workspace import PlanAgent
from palaestra.core.registry import EnvError
from palaestra.envs.workspace.env import WorkspaceEnv
from palaestra.envs.workspace.turns import EXTEND_MARKER, TurnControl


def run(mode: str, **options: Any) -> dict[str, Any]:
    """One episode of contracts-1 (a long first day) with a scripted agent, through `AgentView`s."""
    env = WorkspaceEnv(task="contracts-1", **options)
    agent, view = PlanAgent(mode), env.privileged_view("agent")
    step, turn = env.reset(), 0
    while not step.done:
        seen = AgentView(
            "agent", step.observations.get("agent", []), None, turn, turn, "e", 0, privileged=view
        )
        step = env.step({"agent": asyncio.run(agent.act(seen))})
        turn += 1
    env.close()
    return dict(step.info)


def test_under_a_fixed_limit_the_rereading_agent_runs_out_and_the_gold_one_does_not() -> None:
    gold, rereads = run("gold", turn_limit=20), run("rereads", turn_limit=20)
    assert gold["score"] == 1.0 and gold["turn_stats"]["out_of_turns"] == 0
    assert rereads["stage_scores"][0] < 1.0 and rereads["turn_stats"]["out_of_turns"] >= 1


def test_a_reminder_makes_it_drop_its_extra_reads_and_finish_the_work() -> None:
    reminded = run("rereads", turn_limit=20, turn_policy="reminders", remind_at="8")
    assert reminded["turn_stats"]["reminders"] >= 1
    assert reminded["score"] == 1.0


def test_an_extension_is_asked_for_granted_and_counted() -> None:
    extended = run("rereads", turn_limit=20, turn_policy="extensions", extension_turns=10, max_extensions=1)
    assert extended["score"] == 1.0
    assert extended["turn_stats"]["extensions"] == 1
    assert extended["turn_control"]["policy"] == "extensions"


def test_extensions_are_refused_beyond_the_cap_and_under_other_policies() -> None:
    env = WorkspaceEnv(
        task="expenses-1", turn_limit=5, turn_policy="extensions", extension_turns=2, max_extensions=1
    )
    env.reset()
    granted = env.step({"agent": EXTEND_MARKER}).observations["agent"][-1].content
    refused = env.step({"agent": EXTEND_MARKER}).observations["agent"][-1].content
    assert granted == "Granted 2 more turns; 6 left." and refused == "No more extensions: all 1 were used."
    env.close()
    fixed = WorkspaceEnv(task="expenses-1", turn_limit=5)
    fixed.reset()
    assert "No extensions" in (fixed.step({"agent": EXTEND_MARKER}).observations["agent"][-1].content or "")
    fixed.close()


def test_the_day_message_states_the_budget_and_running_out_ends_the_day() -> None:
    env = WorkspaceEnv(task="expenses-1", turn_limit=2, turn_policy="reminders", remind_at=1)
    first = env.reset().observations["agent"][-1].content or ""
    assert "You have 2 turns for today" in first and "reminded" in first
    assert env.step({"agent": "thinking"}).observations["agent"][-1].content == "Reminder: 1 turn left."
    step = env.step({"agent": "still thinking"})
    texts = [m.content for m in step.observations["agent"]]
    assert "You are out of turns for today." in texts and "Day 2 of 2" in (texts[-1] or "")
    env.close()


def test_turn_options_are_checked() -> None:
    with pytest.raises(EnvError, match="turn_limit"):
        TurnControl.from_options(turn_limit=0)
    with pytest.raises(EnvError, match="remind_at"):
        TurnControl.from_options(turn_policy="reminders", remind_at="soon")
