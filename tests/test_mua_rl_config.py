"""The shipped MUA-RL config (train/configs/mua_rl.toml): the learner serves, the scripted customer asks.

A few-step run of it: the cold start imitates the noisy oracle, RL trains only the `agent` seat,
and the records of every training step and every evaluation show `scripted_user` in the `user`
seat; evaluation is pass^1 on the held-out test split.
"""

from __future__ import annotations

from pathlib import Path

from palaestra.train.config import load_config
from palaestra.train.trainer import Trainer
from test_train_loop import read_jsonl

CONFIG = Path(__file__).resolve().parents[1] / "src" / "palaestra" / "train" / "configs" / "mua_rl.toml"


def test_the_shipped_config_trains_the_agent_seat_against_the_scripted_customer(tmp_path: Path) -> None:
    overrides = {
        "train.out": str(tmp_path / "run"),
        "train.steps": 2,
        "train.threads": 1,
        "sft.steps": 2,
        "sft.episodes": 8,
        "rollout.episodes_per_step": 8,
        "rollout.group_size": 4,
        "eval.every": 0,
        "eval.episodes": 4,
        "eval.final_episodes": 4,
    }
    config = load_config(CONFIG, overrides)
    assert config.rollout.envs == ["service:shop?subset=train"]
    assert config.eval.envs == ["service:shop?subset=test"]
    assert config.sft.agents[0].startswith("oracle:error_rate=")
    Trainer(config).run()

    run = tmp_path / "run"
    steps = [row for row in read_jsonl(run / "metrics.jsonl") if row.get("phase") == "rl"]
    assert len(steps) == 2
    for step in steps:
        assert step["seatings"] == {"agent=policy": 8, "user=scripted_user": 8}
        assert 0.0 <= step["task_success_rate"] <= 1.0
    evaluations = read_jsonl(run / "eval.jsonl")
    assert {row["stage"] for row in evaluations} == {"start", "final"}
    for row in evaluations:
        assert row["env_id"] == "service:shop?subset=test" and row["held_out"]
        assert row["opponent"] == "scripted_user" and row["seat"] == 0
        assert row["scorecard"] == "service" and row["headline_name"] == "success"
