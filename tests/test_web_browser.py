"""The site tasks in headless Chromium: a representative gold script per site scores 1.0 and doing
nothing 0; bad actions are observations; the budget prunes a real page; screenshots land beside the
run; `llm:mock` plays a site task through `palaestra run`. Every task's gold script, the
random-click agent and the spray probe on all of them are in the slow tests at the end.
Skipped when Chromium or Playwright is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from palaestra.envs.web.catalog import all_tasks
from palaestra.envs.web.validation import check_site_task, validate

pytestmark = [
    pytest.mark.skipif(
        shutil.which("chromium") is None, reason="no chromium on PATH (apt-get install -y chromium)"
    ),
]
pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install 'palaestra[web]')"
)

REPRESENTATIVE = (
    "shop.buy_lamp",
    "forum.edit_intro",
    "wiki.fix_typo",
    "admin.disable_spam",
    "shop.order_status",
)
"""One state task per site (a purchase through checkout, an edit, a textarea rewrite, two writes
across a search) and one information task."""


@pytest.mark.parametrize("task_id", REPRESENTATIVE)
def test_gold_script_passes_and_doing_nothing_fails(task_id: str) -> None:
    check = check_site_task(task_id)
    assert check.ok, check.problems
    assert (check.gold, check.null) == (1.0, 0.0)


def test_bad_actions_are_observations_never_crashes() -> None:
    from palaestra.envs.web.env import WebEnv

    env = WebEnv(task="shop.buy_lamp", max_steps=8)
    try:
        env.reset(seed=0)
        button = env.page.find("button", "Search")[0]
        cases = {
            "click [999]": "no element [999]",
            f'type [{button.pid}] "x"': "not a text field",
            "goto https://example.com/": "only this site's pages",
            "dance": "unknown action",
            "": "empty action",
        }
        for action, reason in cases.items():
            step = env.step({"agent": action})
            assert not step.done
            (refused,) = step.invalid_actions
            assert refused.outcome == "retry" and reason in refused.reason
            assert reason in (step.observations["agent"][-1].content or "")
        step = env.step({"agent": "goto /nowhere"})
        assert not step.invalid_actions and "now at /nowhere" in (
            step.observations["agent"][-1].content or ""
        )
        assert "Not found" in (step.observations["agent"][-1].content or "")
        step = env.step({"agent": "back"})
        assert env.page.path == "/"
        step = env.step({"agent": "answer"})
        assert step.done and step.rewards["agent"] == 0.0 and step.info["errors"] == 5
    finally:
        env.close()


def test_budget_prunes_a_real_page_and_keeps_the_relevant_elements() -> None:
    from palaestra.envs.web.env import WebEnv

    env = WebEnv(task="admin.user_email", budget=500)
    try:
        step = env.reset(seed=0)
        step = env.step({"agent": f"click [{env.page.find('link', 'Users')[0].pid}]"})
        text = step.observations["agent"][-1].content or ""
        assert "elements shown (ranked for the task" in text
        assert len(text) < 1200
        assert "Daniel Okafor" in text  # the task names him: his row and link rank high
    finally:
        env.close()


def test_screenshots_are_saved_beside_the_run(tmp_path: Path) -> None:
    from palaestra.envs.web.env import WebEnv

    env = WebEnv(task="shop.order_status", screenshot_dir=str(tmp_path / "shots"))
    try:
        env.reset(seed=0)
        step = env.step({"agent": 'answer "processed"'})
    finally:
        env.close()
    shots = step.info["screenshots"]
    assert len(shots) == 1 and Path(shots[0]).read_bytes()[:4] == b"\x89PNG"


def test_llm_mock_plays_a_site_task_through_palaestra_run(tmp_path: Path) -> None:
    from palaestra.cli.app import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["run", "web-v0", "--agents", "llm:mock", "--episodes", "2", "--out", str(out),
         "-o", "site=wiki", "-o", "max_steps=3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "success %" in result.output and "web tasks by site" in result.output
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert [e["status"] for e in episodes] == ["ok", "ok"]
    assert all(e["returns"]["agent"] == 0.0 and e["info"]["site"] == "wiki" for e in episodes)
    assert all(turn["generation"] is not None for e in episodes for turn in e["turns"])


# ----- every task (slow) ---------------------------------------------------------------------------
@pytest.mark.slow
def test_every_site_task_validates_in_chromium() -> None:
    report = validate("", None)
    assert len(report.checks) == len(all_tasks()) >= 40
    assert not report.failures, [(c.task_id, c.problems) for c in report.failures]


def _play_all(agent: str) -> list[float]:
    import asyncio

    from palaestra.agents.base import agent_factory
    from palaestra.envs.web.env import WebEnv
    from palaestra.rollout.episode import play_episode

    rewards = []
    for task in all_tasks():
        env = WebEnv(task=task.id, max_steps=15)
        episode = asyncio.run(
            play_episode(
                env,
                {"agent": agent_factory(agent)()},
                episode_id=task.id,
                seed=3,
                env_id="web-v0",
                agent_specs={"agent": agent},
            )
        )
        env.close()
        assert episode.status == "ok", episode.cause
        rewards.append(episode.returns["agent"])
    return rewards


@pytest.mark.slow
def test_random_clicks_fail_nearly_every_task() -> None:
    rewards = _play_all("web_random")
    assert sum(rewards) <= 0.05 * len(rewards), rewards


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["web_noop", "web_spray"])
def test_doing_nothing_and_spraying_the_page_fail_every_task(agent: str) -> None:
    assert sum(_play_all(agent)) == 0
