"""Curricula in the trainer (`rollout.curriculum`): horizon and difficulty schedules, learning-progress
sampling, their records in the metrics, and a resume that continues the curriculum where it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from palaestra.core.records import Episode
from palaestra.train.config import ConfigError, parse_config
from palaestra.train.curriculum import Curriculum, CurriculumSection, OptionSchedule
from palaestra.train.trainer import Trainer

EASY = "lumina:list?size=3&depth=1&oracle=state"
HARD = "lumina:list?size=3&depth=2&oracle=state"
TIMING_KEYS = {"time_s", "cpu_s", "rollout_s", "update_s", "critic_s", "branch_s", "seconds"}


def tiny_run(out: Path, **extra: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "train.out": str(out),
        "train.steps": 4,
        "train.checkpoint_every": 1,
        "train.threads": 1,
        "rollout.envs": [EASY, HARD],
        "rollout.episodes_per_step": 6,
        "rollout.engine_batch_size": 1,
        "rollout.curriculum": {
            "horizon": {"start": 2, "every": 2, "increase": 1, "max": 3},
            "tasks": {"envs": [EASY, HARD], "per_step": 1},
        },
        "eval.every": 0,
        "eval.final_episodes": 2,
        "eval.episodes": 2,
    }
    overrides.update(extra)
    return overrides


def rl_records(out: Path) -> dict[int, dict[str, Any]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        r["step"]: {k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records if r["phase"] == "rl"
    }


def test_a_schedule_steps_up_every_n_steps_and_stops_at_its_cap() -> None:
    schedule = OptionSchedule(option="max_turns", start=4, every=10, increase=2, max=9)
    assert [schedule.value(step) for step in (0, 9, 10, 19, 20, 30, 500)] == [4, 4, 6, 6, 8, 9, 9]
    falling = OptionSchedule(option="slack", start=1.0, every=1, increase=-0.25, max=0.5)
    assert [falling.value(step) for step in range(4)] == [1.0, 0.75, 0.5, 0.5]
    with pytest.raises(ValueError, match="never reached"):
        OptionSchedule(option="depth", start=3, every=1, increase=1, max=1)


def test_bad_curricula_are_one_line_config_errors(tmp_path: Path) -> None:
    cases = [
        ({"tasks": {"envs": [EASY, "lumina:grid"], "per_step": 1}}, "not in rollout.envs"),
        ({"tasks": {"envs": [EASY, HARD], "per_step": 3}}, "per_step"),
        (
            {
                "horizon": {"start": 2, "every": 1},
                "difficulty": {"option": "max_turns", "start": 1, "every": 1},
            },
            "both",
        ),
        ({"horizon": {"start": 2, "every": 0}}, "every"),
        ({"pace": 3}, "pace"),
    ]
    for curriculum, expected in cases:
        with pytest.raises(ConfigError, match=expected) as caught:
            parse_config({}, tiny_run(tmp_path, **{"rollout.curriculum": curriculum}))
        assert "\n" not in str(caught.value)


def _episode(env_id: str, success: bool) -> Episode:
    return Episode(id="0", env_id=env_id, agents={"player_0": "policy"}, returns={"player_0": float(success)})


def test_learning_progress_draws_the_task_whose_success_changes() -> None:
    tasks = ["a", "b", "c"]
    section = CurriculumSection.model_validate({"tasks": {"envs": tasks, "per_step": 1, "explore": 0.0}})
    curriculum = Curriculum(section, tasks, seed=0, policy="policy")
    first = [curriculum.step_envs(step)[0] for step in range(3)]
    assert sorted(first) == tasks  # every task once before any is drawn again
    for b_succeeds in (False, True, True):  # `b` starts to succeed; `a` never does, `c` always did
        curriculum.observe([_episode("a", False), _episode("b", b_succeeds), _episode("c", True)])
    drawn = [curriculum.step_envs(step)[0] for step in range(3, 53)]
    assert drawn.count("b") == 50
    assert curriculum.progress("b") > 0 and curriculum.progress("a") == 0


def test_the_schedule_reaches_the_episodes_and_the_metrics(tmp_path: Path) -> None:
    """max_turns follows the horizon schedule in the games played; each step plays one drawn task."""
    out = tmp_path / "run"
    config = parse_config({}, tiny_run(out, **{"train.steps": 3}))
    trainer = Trainer(config)
    trainer.run()
    records = rl_records(out)
    assert [records[s]["curriculum_max_turns"] for s in (1, 2, 3)] == [2, 2, 3]
    assert all(len(records[s]["curriculum"]["envs"]) == 1 for s in records)
    assert {records[s]["curriculum"]["envs"][0] for s in (1, 2)} == {EASY, HARD}  # both visited first
    played = trainer.curriculum.plan(config.rollout, trainer.envs, step=2)
    assert played.envs.options(played.rollout.envs[0])["max_turns"] == 3
    # Evaluation plays the configured options: the world's own default horizon, not the schedule.
    evaluated = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert {r["env_id"] for r in evaluated} == {EASY, HARD}


def test_a_crash_mid_curriculum_resumes_at_the_same_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies after its step-2 checkpoint continues with the same steps 3 and 4 (the
    schedule, the drawn tasks, the sampler's averages) as a run that never stopped."""
    reference = tmp_path / "reference"
    Trainer(parse_config({}, tiny_run(reference))).run()
    expected = rl_records(reference)

    crashed = tmp_path / "crashed"
    original = Trainer._rl_step

    async def dies_at_step_three(self: Trainer) -> None:
        if self.step == 2:
            raise KeyboardInterrupt("killed")
        await original(self)

    monkeypatch.setattr(Trainer, "_rl_step", dies_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        Trainer(parse_config({}, tiny_run(crashed))).run()
    monkeypatch.setattr(Trainer, "_rl_step", original)
    assert sorted(rl_records(crashed)) == [1, 2]

    result = Trainer(parse_config({}, tiny_run(crashed)), resume=True).run()
    assert result.steps_done == 4
    got = rl_records(crashed)
    assert sorted(got) == [1, 2, 3, 4]
    for step in (3, 4):
        assert got[step]["curriculum"] == expected[step]["curriculum"]
        assert got[step] == expected[step]


def test_the_shipped_curriculum_configs_load_and_hold_out_what_they_say() -> None:
    from palaestra.train.config import load_config

    configs = Path(__file__).parent.parent / "src" / "palaestra" / "train" / "configs"
    for name in ("curriculum_lumina.toml", "curriculum_xland.toml"):
        config = load_config(configs / name)
        assert config.rollout.curriculum is not None and config.rollout.curriculum.schedules()
        held = [env_id for env_id in config.eval_envs if config.held_out(env_id)]
        assert held and all(env_id not in config.rollout.envs for env_id in held)
    flat = load_config(configs / "curriculum_lumina.toml", {"rollout.curriculum": {}})
    assert not Curriculum.for_config(flat, "policy").active  # an empty table is no curriculum
