"""gui_graph-v0: the simulated app's screen graph (no browser): conformance at every size, the
solver reaching every goal, baselines that do not, held-out apps, refusals, `llm:mock` through
`palaestra run`, and the shipped training config (a short training run is a slow test)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from palaestra.core import check_env, make
from palaestra.envs.web.gui_graph import SIZES, GuiGraphEnv, build_app, shortest_path

CONFIG = Path(__file__).resolve().parents[1] / "src" / "palaestra" / "train" / "configs" / "gui_graph.toml"


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("kinds", ["navigate", "switch", "navigate,switch"])
def test_every_size_passes_check_env(size: str, kinds: str) -> None:
    check_env(make("gui_graph-v0", size=size, kinds=kinds), seeds=(0, 1, 2))


def test_numbered_actions_name_the_buttons_by_their_place() -> None:
    env = GuiGraphEnv("small", actions="numbers", kinds="navigate")
    check_env(env, seeds=(0, 1))
    step = env.reset(seed=2)
    lines = (step.observations["agent"][-1].content or "").splitlines()
    widgets = env.privileged_view("agent").widgets
    assert lines[-3] == " ".join(f"{n} {label}" for n, label in enumerate(widgets, start=1))
    assert env.legal_actions("agent") == [str(n) for n in range(1, len(widgets) + 1)]
    solved = 0
    for seed in range(50):
        step = env.reset(seed=seed)
        while not step.done:
            step = env.step({"agent": env.privileged_view("agent").solve()})
        solved += step.info["success"]
    assert solved == 50


def test_apps_are_graphs_of_the_sizes_promised() -> None:
    counts = {size: len(build_app(size, 0).screens) for size in SIZES}
    assert counts == {"small": 13, "medium": 40, "large": 341}
    large = build_app("large", 0)
    labels = [screen.label for screen in large.screens]
    assert len(set(labels)) == len(labels)  # distinct labels: a path names one screen
    assert any(len(screen.widgets) > 4 for screen in large.screens)  # shortcuts beside the children
    assert all(screen.switch == (len(screen.path) == 4) for screen in large.screens)  # a switch on each leaf


def test_the_solver_reaches_every_goal_and_doing_nothing_never_does() -> None:
    from palaestra.envs.web.validation import validate

    report = validate("gui_graph", None)
    assert len(report.checks) == 6 and not report.failures, [
        (c.task_id, c.subset, c.problems) for c in report.failures
    ]
    assert all(check.gold == 1.0 and check.null == 0.0 for check in report.checks)


def test_random_play_rarely_succeeds() -> None:
    env = GuiGraphEnv("small")
    rng = random.Random(0)
    wins = 0
    for seed in range(300):
        step = env.reset(seed=seed)
        while not step.done:
            step = env.step({"agent": rng.choice(env.legal_actions("agent"))})
        wins += step.rewards["agent"] == 1.0
    assert 0.03 < wins / 300 < 0.3


def test_held_out_apps_are_other_apps() -> None:
    train = {build_app("small", GuiGraphEnv("small").draw(seed)[0].seed).seed for seed in range(64)}
    test_env = GuiGraphEnv("small", split="test")
    test = {test_env.draw(seed)[0].seed for seed in range(64)}
    assert len(train) == len(test) == 64 and not train & test
    words = lambda app: {s.label for s in app.screens}  # noqa: E731
    assert words(build_app("small", min(train))) != words(build_app("small", min(test)))


def test_a_refused_action_names_the_widgets_and_uses_a_step() -> None:
    env = GuiGraphEnv("small", max_steps=3, kinds="navigate")
    step = env.reset(seed=4)
    text = step.observations["agent"][-1].content or ""
    assert "GAME STATE:" in text and text.splitlines()[-1].startswith("LEGAL ACTIONS:")
    step = env.step({"agent": "<answer>teleport</answer>"})
    (refused,) = step.invalid_actions
    assert refused.outcome == "retry" and "choose one of" in refused.reason
    assert "Invalid action" in (step.observations["agent"][-1].content or "")
    env.step({"agent": "teleport"})
    step = env.step({"agent": "teleport"})  # the third refusal is the third step: the limit
    assert step.truncated and step.rewards["agent"] == 0.0 and step.info["refused"] == 3
    view = env.privileged_view("agent")
    assert len(shortest_path(view.app, view.screen, view.goal.screen)) == step.info["optimal"]


def test_llm_mock_plays_gui_graph_through_palaestra_run(tmp_path: Path) -> None:
    from palaestra.cli.app import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", "gui_graph-v0", "--agents", "llm:mock", "--episodes", "20", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "gui_graph by size" in result.output
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) == 20 and all(e["status"] == "ok" for e in episodes)
    assert all(turn["invalid"] is None for e in episodes for turn in e["turns"])  # mock picks legal widgets
    solver = CliRunner().invoke(
        app,
        ["run", "gui_graph-v0", "--agents", "gui_solver", "--episodes", "20", "--out", str(tmp_path / "s")],
    )
    assert solver.exit_code == 0 and "100.0" in solver.output


def test_the_shipped_config_trains_on_train_apps_and_evaluates_on_held_out_ones() -> None:
    from palaestra.train.config import load_config

    config = load_config(CONFIG)
    assert config.rollout.envs == ["gui_graph-v0"]
    assert config.rollout.env_options["gui_graph-v0"]["split"] == "train"
    assert config.eval.env_options["gui_graph-v0"]["split"] == "test"
    assert config.rollout.env_options["gui_graph-v0"]["actions"] == "numbers"
    assert config.model.init == "tiny" and config.model.template == "compact"
    assert config.train.time_budget_s is not None and config.train.time_budget_s <= 330


@pytest.mark.slow
def test_a_short_training_run_on_gui_graph(tmp_path: Path) -> None:
    from palaestra.cli.app import app

    result = CliRunner().invoke(
        app,
        ["train", str(CONFIG), "--set", f"train.out={tmp_path}", "--set", "sft.steps=3",
         "--set", "sft.episodes=20", "--set", "train.steps=2", "--set", "rollout.episodes_per_step=16",
         "--set", "eval.episodes=8", "--set", "eval.final_episodes=8", "--set", "train.time_budget_s=120"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in records} >= {"start", "final"}
    assert all(r["env_id"] == "gui_graph-v0" and r["scorecard"] == "web" for r in records)
