"""tictoc-v0: facts go stale at known times; re-calling when needed, and only then."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from palaestra.cli.app import app
from palaestra.envs.workspace.plans import play_plan
from palaestra.envs.workspace.tictoc import LEVELS, TASK_IDS, TicTocEnv, tictoc_task


def infos(task_id: str) -> dict[str, dict]:
    env = TicTocEnv(task=task_id)
    try:
        return {mode: dict(play_plan(env, {}, mode).info) for mode in ("gold", "stale", "rereads", "idle")}
    finally:
        env.close()


def test_labels_follow_the_freshness_windows_and_values_change_exactly_when_needed() -> None:
    for task_id in TASK_IDS:
        task = tictoc_task(task_id)
        last: dict = {}
        for question in task.questions:
            seen = last.get(question.fact)
            expected = seen is None or question.time - seen >= LEVELS[question.fact.level]
            assert question.needed == expected
            if seen is not None:
                changed = task.value_at(question.fact, question.time) != task.value_at(question.fact, seen)
                assert changed == question.needed
            if question.needed:
                last[question.fact] = question.time


def test_gold_is_aligned_stale_misses_and_always_calling_is_redundant() -> None:
    found = infos("tictoc-trading-1")
    gold, stale, rereads, idle = found["gold"], found["stale"], found["rereads"], found["idle"]
    assert gold["score"] == 1.0 and gold["tictoc"]["alignment"] == 1.0
    assert stale["score"] < 1.0 and sum(c["needed_missed"] for c in stale["tictoc"]["levels"].values()) > 0
    assert rereads["score"] == 1.0 and rereads["tictoc"]["alignment"] < 1.0
    assert sum(c["redundant"] for c in rereads["tictoc"]["levels"].values()) > 0
    assert idle["score"] == 0.0


def test_questions_carry_the_clock_and_it_moves_between_them() -> None:
    env = TicTocEnv(task="tictoc-travel-1")
    first = env.reset().observations["agent"][-1]
    second = env.step({"agent": "No idea."}).observations["agent"][-1]
    assert first.content.startswith("[2024-06-10 ") and second.time > first.time
    env.close()


def test_tictoc_validates_and_plays_through_palaestra_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["validate", "workspace:tictoc", "-t", "tictoc-clinic-2", "-t", "tictoc-travel-3"]
    )
    assert result.exit_code == 0 and "2/2 tasks valid" in result.output, result.output
    for agent in ("workspace_gold", "workspace_rereads", "llm:mock"):
        out = tmp_path / agent.replace(":", "_")
        run = CliRunner().invoke(
            app, ["run", "tictoc-v0", "--agents", agent, "--episodes", "3", "--out", str(out)]
        )
        assert run.exit_code == 0, run.output
        assert "tictoc-v0: tool calls against the world's staleness labels" in run.output
        episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
        assert all(e["status"] == "ok" for e in episodes)
        if agent != "llm:mock":
            assert all(e["info"]["score"] == 1.0 for e in episodes)
