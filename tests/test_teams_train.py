"""Training teams: the shipped teams config, casts that put the learner in every role or in one,
and per-seat trajectories of a team episode (what `mars` and `flow_grpo` read)."""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path

import pytest

from palaestra.agents.base import agent_factory
from palaestra.core import make
from palaestra.core.casts import LEARNER, default_cast
from palaestra.rollout.episode import play_episode
from palaestra.train.advantages import compute_advantages
from palaestra.train.config import ConfigError, load_config, parse_config
from palaestra.train.rewards import RewardConfig, is_draw, trajectories_from_episodes

CONFIG = Path(str(files("palaestra.train") / "configs" / "teams.toml"))


def test_the_teams_config_puts_the_learner_in_every_seat_and_holds_out_the_test_split() -> None:
    config = load_config(CONFIG)
    cast = config.rollout.casts["debate-v0"]
    players = make("debate-v0", **config.rollout.env_options["debate-v0"]).players
    assert cast.seatings(players) == [((LEARNER,) * 3, 1.0)]
    assert all("split=test" in env_id for env_id in config.eval_envs) and config.held_out(config.eval_envs[0])
    assert not config.rewards.use_draw_bonus
    assert default_cast("malt-v0") is not None and default_cast("malt-v0").learner == "all"  # type: ignore[union-attr]


def test_a_cast_puts_the_learner_in_one_team_role() -> None:
    config = parse_config(
        {
            "rollout": {
                "envs": ["malt-v0"],
                "casts": {
                    "malt-v0": {
                        "learner": ["refiner"],
                        "seats": {
                            "generator": [{"agent": "team_wrong"}, {"agent": "team_solver"}],
                            "verifier": [{"agent": "team_solver"}],
                        },
                    }
                },
            }
        }
    )
    seatings = dict(config.rollout.casts["malt-v0"].seatings(("generator", "verifier", "refiner")))
    assert seatings == {
        ("team_wrong", "team_solver", LEARNER): pytest.approx(0.5),
        ("team_solver", "team_solver", LEARNER): pytest.approx(0.5),
    }
    with pytest.raises(ConfigError, match="seat 'judge' is not a seat"):
        parse_config({"rollout": {"envs": ["debate-v0"], "casts": {"debate-v0": {"learner": ["judge"]}}}})


def test_a_team_episode_gives_one_trajectory_per_seat_with_the_team_outcome() -> None:
    seats = make("debate-v0").players
    episodes = [
        asyncio.run(
            play_episode(
                make("debate-v0", task="largest"),
                {seat: agent_factory("llm:mock")() for seat in seats},
                episode_id=f"e{seed}",
                seed=seed,
                env_id="debate-v0",
                agent_specs=dict.fromkeys(seats, LEARNER),
            )
        )
        for seed in range(6)
    ]
    rewards = RewardConfig(use_draw_bonus=False, cooperative_families=("teams",))
    assert not any(is_draw(episode, rewards) for episode in episodes)
    batch = trajectories_from_episodes(episodes, config=rewards)
    assert len(batch.trajectories) == 18
    for trajectory in batch.trajectories:
        assert trajectory.role in seats and len(trajectory.turn_rewards) >= 2  # two rounds, retries too
        assert trajectory.final_return in (0.0, 1.0)
    for estimator in ("mars", "flow_grpo"):
        advantages = compute_advantages(batch.trajectories, estimator)
        assert [len(a) for a in advantages] == [len(t.turn_rewards) for t in batch.trajectories]
