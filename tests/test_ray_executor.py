"""The Ray executor on a local two-CPU cluster: the same episodes as in process, resume, workers
that die mid-run (nothing lost, nothing written twice), hosted models with versioned weights.

One cluster for the whole module (starting Ray costs seconds).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from palaestra.agents.base import AgentError, AgentView  # noqa: E402
from palaestra.agents.scripted import RandomAgent  # noqa: E402
from palaestra.core.records import Episode  # noqa: E402
from palaestra.rollout.ray_executor import (  # noqa: E402
    HostedAgent,
    RayPool,
    shutdown_pools,
    worker_pids,
)
from palaestra.rollout.runner import EPISODES_FILE, RunConfig, iter_episodes, run_episodes  # noqa: E402

EXECUTOR = "ray?workers=2"


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Any:
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    # The agents below travel to the workers by value: the workers cannot import this module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    shutdown_pools()
    if started:
        ray.shutdown()


def run(config: RunConfig, out: Path | None, **kwargs: Any) -> Any:
    return asyncio.run(run_episodes(config, out, **kwargs))


def by_id(path: Path) -> dict[str, Episode]:
    episodes: dict[str, Episode] = {}
    for episode in iter_episodes(path):
        assert episode.id not in episodes, f"episode {episode.id} written twice"
        episodes[episode.id] = episode
    return episodes


def outcome(episode: Episode) -> tuple[Any, ...]:
    """Everything about an episode that does not depend on timing."""
    return (
        episode.seed,
        episode.agents,
        [(t.step, t.player, t.action, t.reward, t.invalid) for t in episode.turns],
        episode.returns,
        episode.status,
        episode.terminated,
        episode.num_steps,
    )


class SlowRandom(RandomAgent):
    """A random agent that waits a little per move, so episodes are in flight long enough to be
    caught by a kill."""

    async def act(self, view: AgentView) -> Any:
        await asyncio.sleep(0.004)
        return await super().act(view)


class WorkerKiller(RandomAgent):
    """A random agent whose process dies when it plays episode 000007 (any worker, every time)."""

    async def act(self, view: AgentView) -> Any:
        if view.episode_id == "000007":
            os._exit(1)
        await asyncio.sleep(0.002)
        return await super().act(view)


def test_two_hundred_episodes_match_in_process_episode_by_episode(tmp_path: Path) -> None:
    base = {
        "env_id": "tic_tac_toe-v0",
        "agents": ["random", "minimax"],
        "episodes": 200,
        "seed": 11,
        "group_size": 2,
        "alternate_seats": True,
    }
    local = run(RunConfig(**base), tmp_path / "local")
    remote = run(RunConfig(**base, executor=EXECUTOR), tmp_path / "ray")
    assert local.total == remote.total == 200
    assert remote.statuses == {"ok": 200}
    assert remote.seats.keys() == local.seats.keys()
    for key, stats in local.seats.items():
        assert (remote.seats[key].wins, remote.seats[key].draws) == (stats.wins, stats.draws)
    mine, theirs = by_id(tmp_path / "local" / EPISODES_FILE), by_id(tmp_path / "ray" / EPISODES_FILE)
    assert sorted(theirs) == sorted(mine) == [f"{i:06d}" for i in range(200)]
    for ident, episode in mine.items():
        assert outcome(theirs[ident]) == outcome(episode), ident
    # Both seatings and both workers were used.
    assert {tuple(e.agents.values()) for e in theirs.values()} == {
        ("random", "minimax"),
        ("minimax", "random"),
    }
    assert len(RayPool.get(EXECUTOR).live) == 2


def test_resume_on_ray_skips_what_is_written_and_mixes_with_in_process(tmp_path: Path) -> None:
    base = {"env_id": "tic_tac_toe-v0", "agents": ["random", "first"], "seed": 5}
    run(RunConfig(**base, episodes=60), tmp_path)  # in process
    progress: list[tuple[int, int]] = []
    summary = run(
        RunConfig(**base, episodes=150, executor=EXECUTOR),
        tmp_path,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert summary.skipped == 60 and summary.total == 150
    assert progress[0] == (60, 150) and progress[-1] == (150, 150)
    episodes = by_id(tmp_path / EPISODES_FILE)
    assert len(episodes) == 150
    # A third run on Ray finds nothing to do.
    again = run(RunConfig(**base, episodes=150, executor=EXECUTOR), tmp_path)
    assert again.skipped == 150 and len(by_id(tmp_path / EPISODES_FILE)) == 150
    reference = tmp_path / "reference"
    run(RunConfig(**base, episodes=150), reference)
    for ident, episode in by_id(reference / EPISODES_FILE).items():
        assert outcome(episodes[ident]) == outcome(episode)


def test_episodes_stream_to_the_callback_as_records(tmp_path: Path) -> None:
    seen: list[Episode] = []
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=30, executor=EXECUTOR)
    run(config, None, on_episode=seen.append)
    assert sorted(e.id for e in seen) == [f"{i:06d}" for i in range(30)]
    assert all(isinstance(e, Episode) and e.num_steps >= 5 for e in seen)


def test_a_killed_actor_loses_nothing(tmp_path: Path) -> None:
    pool = RayPool.get(EXECUTOR)
    victim = pool.live[0].actor
    killed: list[int] = []

    def kill_once(done: int, total: int) -> None:
        if done >= 40 and not killed:
            killed.append(done)
            ray.kill(victim)

    config = RunConfig(
        env_id="tic_tac_toe-v0",
        agents=["slow", "random"],
        episodes=200,
        seed=2,
        concurrency=16,
        executor=EXECUTOR,
    )
    summary = run(config, tmp_path / "ray", factories={"slow": SlowRandom}, on_progress=kill_once)
    assert killed, "the run ended before the kill"
    stats = pool.last_run
    assert stats.lost_workers == 1 and stats.replacements == 1
    assert stats.retried >= 1, "the killed worker had episodes in flight"
    episodes = by_id(tmp_path / "ray" / EPISODES_FILE)
    assert sorted(episodes) == [f"{i:06d}" for i in range(200)]
    assert summary.total == 200
    for episode in episodes.values():
        assert episode.status == "ok" or (episode.status == "error" and episode.cause)
    # Retried episodes are the same episodes: compare with an in-process run.
    run(config.model_copy(update={"executor": "local"}), tmp_path / "local", factories={"slow": SlowRandom})
    for ident, episode in by_id(tmp_path / "local" / EPISODES_FILE).items():
        if episodes[ident].status == "ok":
            assert outcome(episodes[ident]) == outcome(episode)
    assert len(pool.live) == 2  # the pool replaced its dead worker


def test_an_episode_that_kills_every_worker_is_retried_once_then_recorded_as_error(tmp_path: Path) -> None:
    pool = RayPool.get(EXECUTOR)
    before = set(worker_pids(pool))
    config = RunConfig(
        env_id="tic_tac_toe-v0",
        agents=["killer", "random"],
        episodes=40,
        seed=9,
        concurrency=8,
        executor=EXECUTOR,
    )
    summary = run(config, tmp_path / "ray", factories={"killer": WorkerKiller})
    stats = pool.last_run
    assert stats.lost_workers == 2 and stats.failed >= 1
    episodes = by_id(tmp_path / "ray" / EPISODES_FILE)
    assert sorted(episodes) == [f"{i:06d}" for i in range(40)]
    poisoned = episodes["000007"]
    assert poisoned.status == "error"
    assert poisoned.cause is not None and "died twice" in poisoned.cause
    assert poisoned.agents == {"player_0": "killer", "player_1": "random"} and poisoned.seed == 9 + 7
    # Everything else was retried alone after the first death and finished, as in process.
    reference = tmp_path / "local"
    run(config.model_copy(update={"executor": "local"}), reference, factories={"killer": RandomAgent})
    expected = by_id(reference / EPISODES_FILE)
    for ident, episode in episodes.items():
        if ident != "000007":
            assert episode.status == "ok", (ident, episode.cause)
            assert outcome(episode) == outcome(expected[ident])
    assert summary.statuses == {"ok": 39, "error": 1}
    assert not before & set(worker_pids(pool))  # both workers were replaced


def test_agents_are_checked_before_anything_runs(tmp_path: Path) -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "nobody"], episodes=3, executor=EXECUTOR)
    with pytest.raises(AgentError, match="unknown agent 'nobody'"):
        run(config, tmp_path)
    assert not (tmp_path / EPISODES_FILE).exists()


def test_a_bad_agent_option_raised_in_a_worker_arrives_as_itself(tmp_path: Path) -> None:
    config = RunConfig(
        env_id="tic_tac_toe-v0",
        agents=["random", "mcts:simulations=x,bogus=1"],
        episodes=2,
        executor=EXECUTOR,
    )
    with pytest.raises(AgentError, match="mcts"):
        run(config, tmp_path)


def test_unpicklable_factories_are_refused_in_one_line(tmp_path: Path) -> None:
    import threading

    lock = threading.Lock()

    def factory() -> RandomAgent:
        with lock:
            return RandomAgent()

    config = RunConfig(env_id="tic_tac_toe-v0", agents=["locked", "random"], episodes=2, executor=EXECUTOR)
    with pytest.raises(AgentError, match="cannot be sent to Ray workers"):
        run(config, tmp_path, factories={"locked": factory})


def test_hosted_models_play_with_the_broadcast_weights_and_stamp_their_version(tmp_path: Path) -> None:
    import torch

    from palaestra.models.tiny import init_tiny_model
    from palaestra.train.forward import TrainRow, token_logprobs

    folder = init_tiny_model(
        tmp_path / "model", seed=3, hidden_size=32, num_hidden_layers=1, intermediate_size=64
    )
    pool = RayPool.get(EXECUTOR)
    pool.host("policy", folder, max_batch_size=16, seed=0)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    pool.broadcast("policy", model.state_dict(), version=7)
    assert pool.weight_versions() == [{"policy": 7}, {"policy": 7}]

    policy = HostedAgent("policy", temperature=1.0, stamps_version=True)
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["policy", "random"], episodes=12, executor=EXECUTOR)
    seen: list[Episode] = []
    run(config, None, factories={"policy": policy}, on_episode=seen.append)
    assert len(seen) == 12 and {episode.weight_version for episode in seen} == {7}
    # The recorded log-probs are the broadcast weights' own: a forward pass under them agrees.
    turns = [t for e in seen for t in e.player_turns("player_0") if t.generation is not None]
    assert turns
    model.eval()
    for turn in turns[:6]:
        generation = turn.generation
        assert generation is not None and generation.logprobs is not None
        row = TrainRow.from_generations([generation])
        scored = token_logprobs(model, [row]).logprobs
        mask = generation.loss_mask or [1] * len(generation.token_ids)
        recorded = [value for value, sampled in zip(generation.logprobs, mask, strict=True) if sampled]
        assert torch.allclose(scored, torch.tensor(recorded), atol=1e-4)
    # An agent that does not stamp leaves the field empty.
    unstamped: list[Episode] = []
    run(config, None, factories={"policy": HostedAgent("policy")}, on_episode=unstamped.append)
    assert {episode.weight_version for episode in unstamped} == {None}


def test_cli_run_with_the_ray_executor(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from palaestra.cli.app import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "tic_tac_toe-v0",
            "--agents",
            "random,first",
            "-n",
            "25",
            "--out",
            str(out),
            "--executor",
            EXECUTOR,
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert Counter(e.status for e in iter_episodes(out / EPISODES_FILE)) == {"ok": 25}
    bad = CliRunner().invoke(
        app, ["run", "tic_tac_toe-v0", "--agents", "random,first", "--executor", "spark"]
    )
    assert bad.exit_code == 2
    assert "unknown executor" in bad.output


# ----- training with Ray rollouts ----------------------------------------------------------------
TIMING_KEYS = {"time_s", "rollout_s", "update_s", "seconds", "cpu_s"}
STALENESS_KEYS = {
    "weight_version",
    "stale_dropped",
    "stale_dropped_total",
    "weight_lag_mean",
    "weight_lag_max",
}


def train_overrides(out: Path, **extra: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "train.out": str(out),
        "train.steps": 3,
        "train.checkpoint_every": 3,
        "train.threads": 1,
        "model.hidden_size": 32,
        "model.intermediate_size": 64,
        "sft.steps": 1,
        "sft.episodes": 8,
        "sft.batch_rows": 16,
        "rollout.episodes_per_step": 12,
        "rollout.snapshot_every": 1,
        "rollout.engine_batch_size": 1,
        "eval.every": 0,
        "eval.final_episodes": 2,
        "eval.episodes": 2,
        "eval.opponents": {"tic_tac_toe-v0": ["random"]},
    }
    overrides.update(extra)
    return overrides


def rl_metrics(out: Path, drop: set[str]) -> list[dict[str, Any]]:
    import json

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in drop} for r in records if r["phase"] == "rl"]


def test_training_on_ray_workers_equals_training_in_process(tmp_path: Path) -> None:
    """Engines with batch size 1 sample bit for bit alike, so if every worker plays with the weights
    the trainer just broadcast, the run is the in-process run, step by step."""
    from palaestra.train.config import parse_config
    from palaestra.train.trainer import Trainer

    Trainer(parse_config({}, train_overrides(tmp_path / "local"))).run()
    Trainer(parse_config({}, train_overrides(tmp_path / "ray", **{"rollout.executor": EXECUTOR}))).run()
    local = rl_metrics(tmp_path / "local", TIMING_KEYS)
    remote = rl_metrics(tmp_path / "ray", TIMING_KEYS)
    assert [r["weight_version"] for r in remote] == [0, 1, 2]
    assert all(r["stale_dropped"] == 0 and r["weight_lag_max"] == 0 for r in remote)
    assert [{k: v for k, v in r.items() if k not in STALENESS_KEYS} for r in remote] == local
    # The trainer ended its workers.
    assert EXECUTOR not in RayPool._pools


def test_overlapping_rollouts_drop_only_what_lags_too_far(tmp_path: Path) -> None:
    from palaestra.train.config import parse_config
    from palaestra.train.trainer import Trainer

    overrides = train_overrides(
        tmp_path / "run",
        **{
            "rollout.executor": EXECUTOR,
            "rollout.async_rollouts": True,
            "rollout.max_staleness": 0,
            "train.steps": 4,
        },
    )
    result = Trainer(parse_config({}, overrides)).run()
    assert result.steps_done == 4
    records = rl_metrics(tmp_path / "run", set())
    assert [r["weight_version"] for r in records] == [0, 1, 2, 3]
    total = 0
    for record in records:
        # Whatever the timing, nothing older than max_staleness is trained on, and every episode
        # played is either trained on or counted as dropped.
        assert record["weight_lag_max"] == 0
        assert record["episodes"] + record["stale_dropped"] == 12
        total += record["stale_dropped"]
        assert record["stale_dropped_total"] == total


def test_stale_episodes_are_counted_against_the_current_version() -> None:
    from palaestra.train.config import parse_config
    from palaestra.train.trainer import Trainer

    trainer = Trainer(parse_config({}, {"rollout.max_staleness": 1}))
    trainer.remote = object()  # only its presence matters here
    trainer.step = 5
    episodes = [
        Episode(id=f"{i:06d}", env_id="tic_tac_toe-v0", agents={}, weight_version=version)
        for i, version in enumerate([5, 4, 3, None, 1, 5])
    ]
    kept, stats = trainer._drop_stale(episodes)
    assert [e.weight_version for e in kept] == [5, 4, None, 5]
    assert stats == {
        "weight_version": 5,
        "stale_dropped": 2,
        "stale_dropped_total": 2,
        "weight_lag_mean": 0.25,
        "weight_lag_max": 1,
    }
