"""Conversational navigation (`weblinx-v0`) and MiniWoB++ (`miniwob-v0`) in Chromium: the gold
navigator with the scripted instructor succeeds with full turn scores, a navigator that ignores
the instructions fails and scores lower, any agent can sit in the instructor's seat; MiniWoB++'s
own pages give their own reward to the scripted solvers and -1 to stopping. Skipped without
Chromium or Playwright; every conversational task and every solver on three seeds are slow tests."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from palaestra.agents.base import agent_factory
from palaestra.core.records import Episode
from palaestra.eval.web import summarize
from palaestra.rollout.episode import play_episode

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH")
pytest.importorskip("playwright.async_api", reason="playwright is not installed")


def play(env_id: str, specs: dict[str, str], seed: int = 0, **options: Any) -> Episode:
    from palaestra.core import make

    env = make(env_id, **options)
    agents = {player: agent_factory(spec)() for player, spec in specs.items()}
    try:
        return asyncio.run(
            play_episode(env, agents, episode_id=f"t{seed}", seed=seed, env_id=env_id, agent_specs=specs)
        )
    finally:
        env.close()


def test_gold_navigator_with_the_scripted_instructor_succeeds() -> None:
    episode = play(
        "weblinx-v0", {"navigator": "web_gold", "instructor": "web_instructor"}, task="shop.cancel_order"
    )
    assert episode.status == "ok", episode.cause
    assert episode.returns == {"navigator": 1.0, "instructor": 1.0}
    scores = episode.info["weblinx"]
    assert scores["intent_match"] == scores["element_accuracy"] == scores["text_match"] == 1.0
    assert scores["instructor_turns"] == 2 and scores["task_success"]
    said = [t for t in episode.turns if t.player == "instructor"]
    assert "cancel an order" in str(said[0].action)
    navigator_first = episode.turns[1].observation
    assert any("cancel an order" in (m.content or "") for m in navigator_first)


def test_a_navigator_that_ignores_the_instructor_fails() -> None:
    episode = play(
        "weblinx-v0",
        {"navigator": "web_random", "instructor": "web_instructor"},
        task="shop.cancel_order",
        max_steps=6,
    )
    assert episode.status == "ok" and episode.returns["navigator"] == 0.0
    assert episode.info["weblinx"]["intent_match"] < 1.0  # it never asks for the rest of the task
    (section,) = [s for s in summarize([episode]) if s.title.startswith("conversational")]
    assert section.columns[2:5] == ["intent match", "element accuracy", "text match"]


def test_any_agent_can_be_the_instructor() -> None:
    episode = play("weblinx-v0", {"navigator": "web_gold", "instructor": "llm:mock"}, task="admin.user_email")
    assert episode.status == "ok", episode.cause
    assert all(t.generation is not None for t in episode.turns if t.player == "instructor")


def test_miniwob_pages_give_their_own_reward() -> None:
    for task in ("click-checkboxes", "login-user"):
        solved = play(f"miniwob:{task}", {"agent": "web_gold"}, seed=5)
        assert solved.status == "ok" and solved.returns["agent"] == 1.0, solved.info
        assert solved.info["finished"] and solved.info["raw_reward"] == 1.0
        stopped = play(f"miniwob:{task}", {"agent": "web_noop"}, seed=5)
        assert stopped.returns["agent"] == -1.0 and not stopped.info["finished"]
    from palaestra.envs.web.miniwob import MiniWobEnv

    env = MiniWobEnv("click-button")
    try:
        for seed in range(20):  # a problem with a wrong button on it
            env.reset(seed=seed)
            wanted = env.privileged_view("agent").utterance.split('"')[1]
            others = [e for e in env.page.elements if e.role == "button" and e.name != wanted]
            if others:
                break
        step = env.step({"agent": f"click [{others[0].pid}]"})  # the task's own script says: wrong
        assert step.done and step.rewards["agent"] == -1.0 and step.info["finished"]
    finally:
        env.close()


def test_miniwob_unknown_task_is_one_line() -> None:
    from palaestra.core import EnvError, make

    with pytest.raises(EnvError, match=r"unknown MiniWoB\+\+ task 'click-buton' \(did you mean click-button"):
        make("miniwob:click-buton")


@pytest.mark.slow
def test_every_conversational_task_validates() -> None:
    from palaestra.envs.web.validation import validate

    report = validate("weblinx", None)
    assert len(report.checks) >= 15 and not report.failures, [
        (c.task_id, c.problems) for c in report.failures
    ]


@pytest.mark.slow
def test_every_miniwob_solver_validates() -> None:
    from palaestra.envs.web.validation import validate

    report = validate("miniwob", None)
    assert len(report.checks) >= 12 and not report.failures, [
        (c.task_id, c.problems) for c in report.failures
    ]
