"""The trainer loop end to end on tiny budgets: outputs, turn-memory rows, config errors, resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palaestra.train.config import ConfigError, default_config_path, load_config, parse_config
from palaestra.train.trainer import Trainer, TrainError, league_seat_counts

TIMING_KEYS = {"time_s", "cpu_s", "rollout_s", "update_s", "critic_s", "branch_s", "seconds"}


def tiny_overrides(out: Path, **extra: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "train.out": str(out),
        "train.steps": 3,
        "train.checkpoint_every": 1,
        "train.threads": 1,
        "sft.steps": 2,
        "sft.episodes": 8,
        "sft.batch_rows": 16,
        "rollout.episodes_per_step": 12,
        "rollout.snapshot_every": 1,
        "rollout.engine_batch_size": 1,
        "eval.every": 0,
        "eval.final_episodes": 4,
        "eval.episodes": 4,
        "eval.opponents": {"tic_tac_toe-v0": ["random"]},
    }
    overrides.update(extra)
    return overrides


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timing(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


def test_a_tiny_run_writes_everything(tmp_path: Path) -> None:
    config = parse_config({}, tiny_overrides(tmp_path / "run"))
    result = Trainer(config).run()
    out = tmp_path / "run"
    assert result.steps_done == 3 and not result.stopped_early
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["sft_step"] for m in metrics if m["phase"] == "sft"] == [1, 2]
    rl = [m for m in metrics if m["phase"] == "rl"]
    assert [m["step"] for m in rl] == [1, 2, 3]
    for record in rl:
        assert record["episodes"] == 12 and record["skipped_episodes"] == {}
        assert record["trained_tokens"] > 0 and record["rows"] > 0
        assert 0.0 <= record["illegal_rate"] <= 1.0
        # The engine's log-probs and the trainer's agree: token-exact rows, same weights.
        assert record["rollout_vs_train/ratio_dev_max"] < 1e-3
    stages = {r["stage"] for r in read_jsonl(out / "eval.jsonl")}
    assert stages == {"start", "final"}
    assert {c.seat for c in result.evaluations["final"]} == {0, 1}
    assert (out / "final" / "config.json").is_file()
    assert (out / "checkpoints" / "step_000003" / "trainer_state.pt").is_file()
    assert len(list((out / "checkpoints").iterdir())) == config.train.keep_checkpoints
    from palaestra.train.plots import plot_learning_curve

    png = plot_learning_curve(out)
    assert png.read_bytes().startswith(b"\x89PNG")


def first_step(out: Path, **extra: Any) -> tuple[Trainer, Any]:
    """A fresh trainer (no cold start, league of the start policy) and its first RL step's
    rollouts: (episodes, branches, info)."""
    import asyncio

    trainer = Trainer(parse_config({}, tiny_overrides(out, **{"train.steps": 1, "sft.steps": 0, **extra})))

    async def scenario() -> Any:
        trainer._prepare_folder()
        trainer._build(trainer._initial_model_folder())
        trainer.league.add(0, trainer.policy.state_dict())
        try:
            return await trainer._rollouts()
        finally:
            await trainer.engine.close()
            await trainer.league_engine.close()

    return trainer, asyncio.run(scenario())


def first_rollouts(out: Path, **extra: Any) -> list[Any]:
    """The episodes of a fresh trainer's first RL step."""
    return list(first_step(out, **extra)[1][0])


def test_turn_memory_rows_are_one_context_per_turn(tmp_path: Path) -> None:
    """The compact template gives a fresh context every turn: each row is one turn."""
    from palaestra.train.rewards import trajectories_from_episodes

    episodes = first_rollouts(tmp_path / "run")
    assert all(e.status == "ok" for e in episodes)
    for trajectory in trajectories_from_episodes(episodes):
        rows = trajectory.token_rows()
        assert len(rows) == trajectory.num_turns
        for k, row in enumerate(rows):
            assert row.input_ids == trajectory.prompt_ids[k] + trajectory.token_ids[k]
            assert sum(row.loss_mask) == len(trajectory.token_ids[k])


def league_rollouts(out: Path, **extra: Any) -> list[Any]:
    """First-step episodes against a hot league only (every game has a league seat)."""
    return first_rollouts(out, **{"rollout.self_play": 0.0, "rollout.league_temperature": 5.0, **extra})


def test_branch_continuations_replay_the_opening_and_train_only_the_chosen_move(tmp_path: Path) -> None:
    from palaestra.train.rewards import trajectories_from_episodes

    trainer, (episodes, branches, info) = first_step(
        tmp_path / "run",
        **{
            "model.template": "board",  # one session per seat: the replayed opening is its context
            "rollout.self_play": 0.5,
            "rollout.league_legal_only": True,
            "rollout.branch_states": 4,
            "rollout.branch_actions": 3,
        },
    )
    assert len(branches) == 4 and info["branch_s"] > 0
    for point, group in branches:
        source = point.episode
        assert source in episodes and episodes and point.turn_index < len(source.turns)
        assert 2 <= len(point.actions) <= 3 and len(set(point.actions)) == len(point.actions)
        assert set(point.actions) <= set(source.turns[point.turn_index].legal_actions or [])
        assert [e.seed for e in group] == [source.seed] * len(point.actions) and source.agents == group[
            0
        ].agents
        for episode, action in zip(group, point.actions, strict=True):
            # The opening as recorded, then the chosen move, by the same player.
            opening = [(t.player, t.action) for t in source.turns[: point.turn_index]]
            assert [(t.player, t.action) for t in episode.turns[: point.turn_index]] == opening
            assert (episode.turns[point.turn_index].player, episode.turns[point.turn_index].action) == (
                point.player,
                action,
            )
            # Only the chosen turn carries loss, and the seat's tokens up to it are the source's.
            mine = [t for t in episode.turns if t.player == point.player]
            trained = [k for k, t in enumerate(mine) if t.generation and any(t.generation.loss_mask)]
            assert trained == [point.branch_turn]
            assert all(not any(t.generation.loss_mask) for t in episode.turns if t.player != point.player)
            source_mine = [t for t in source.turns if t.player == point.player]
            for k in range(point.branch_turn):
                assert mine[k].generation.prompt_ids == source_mine[k].generation.prompt_ids
                assert mine[k].generation.token_ids == source_mine[k].generation.token_ids
            assert (
                mine[point.branch_turn].generation.prompt_ids
                == source_mine[point.branch_turn].generation.prompt_ids
            )
    trajectories, advantages, stats = trainer._branch_batch(branches)
    assert stats["branch_points"] == 4 and stats["branch_episodes"] == len(trajectories)
    for trajectory, per_turn in zip(trajectories, advantages, strict=True):
        assert len(per_turn) == trajectory.num_turns
        assert sum(any(mask) for mask in trajectory.loss_mask) == 1
    assert trajectories_from_episodes([g for _, group in branches for g in group])


def test_training_with_branches_updates_on_them_and_logs_them(tmp_path: Path) -> None:
    branching = {
        "train.steps": 2,
        "sft.steps": 1,
        "model.template": "board",
        "rollout.branch_states": 3,
        "rollout.branch_weighting": "policy",
    }
    Trainer(parse_config({}, tiny_overrides(tmp_path / "run", **branching))).run()
    steps = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["phase"] == "rl"]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        assert record["branch_points"] == 3 and record["branch_episodes"] >= 6 and record["branch_s"] > 0
        assert 0.0 <= record["branch_informative"] <= 1.0 and record["rows"] > 0


def test_league_legal_only_opponents_never_play_an_illegal_move(tmp_path: Path) -> None:
    def league_illegal(episodes: list[Any]) -> int:
        return sum(
            1
            for episode in episodes
            for turn in episode.turns
            if episode.agents[turn.player] == "league" and turn.invalid is not None
        )

    constrained = league_rollouts(tmp_path / "a", **{"rollout.league_legal_only": True})
    assert league_illegal(constrained) == 0
    assert any(episode.agents[t.player] == "league" for episode in constrained for t in episode.turns)
    # The control: the same hot, untrained snapshot unconstrained does play illegal moves.
    assert league_illegal(league_rollouts(tmp_path / "b")) > 0


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    games=st.integers(0, 500),
)
def test_league_seat_counts_sum_to_the_games_and_follow_the_weights(weights: list[float], games: int) -> None:
    counts = league_seat_counts(weights, games)
    assert sum(counts) == games and len(counts) == len(weights)
    for count, weight in zip(counts, weights, strict=True):
        assert abs(count - games * weight / sum(weights)) < 1 + 1e-9
        if weight == 0:
            assert count == 0


def test_league_seat_weights_put_the_policy_in_the_weighted_seat(tmp_path: Path) -> None:
    assert league_seat_counts([1, 2], 12) == [4, 8]
    assert league_seat_counts([1, 1], 7) == [4, 3]

    def policy_seats(episodes: list[Any]) -> list[int]:
        return sorted(
            list(episode.agents.values()).index("policy")
            for episode in episodes
            if "league" in episode.agents.values()
        )

    weighted = league_rollouts(tmp_path / "a", **{"rollout.league_seat_weights": {"tic_tac_toe-v0": [1, 2]}})
    assert policy_seats(weighted) == [0] * 4 + [1] * 8
    assert policy_seats(league_rollouts(tmp_path / "b")) == [0] * 6 + [1] * 6  # unlisted: alternate evenly
    with pytest.raises(ConfigError, match=r"not in rollout\.envs"):
        parse_config({}, {"rollout.league_seat_weights": {"kuhn_poker-v0": [1, 1]}})
    with pytest.raises(ConfigError, match="positive sum"):
        parse_config({}, {"rollout.league_seat_weights": {"tic_tac_toe-v0": [1, -1]}})
    with pytest.raises(TrainError, match="has 3 weights; tic_tac_toe-v0 has 2 seats"):
        first_rollouts(tmp_path / "c", **{"rollout.league_seat_weights": {"tic_tac_toe-v0": [1, 1, 1]}})


def test_the_start_policy_can_play_at_its_own_temperature(tmp_path: Path) -> None:
    """`first_snapshot_temperature` applies to the start policy only; later snapshots keep
    `league_temperature`."""

    def league_openings(episodes: list[Any]) -> list[str]:
        return [
            episode.turns[0].action
            for episode in episodes
            if episode.agents[episode.turns[0].player] == "league"
        ]

    overrides = {"rollout.first_snapshot_temperature": 0.0, "rollout.league_legal_only": True}
    greedy_start = league_openings(league_rollouts(tmp_path / "a", **overrides))
    hot_start = league_openings(league_rollouts(tmp_path / "b", **{"rollout.league_legal_only": True}))
    assert len(greedy_start) >= 4 and len(set(greedy_start)) == 1  # greedy: one opening move
    assert len(set(hot_start)) > 1  # the control: at temperature 5.0 the openings vary

    hot_league = {**overrides, "rollout.league_temperature": 5.0}
    from palaestra.train.rollouts import League

    trainer = Trainer(parse_config({}, tiny_overrides(tmp_path / "c", **hot_league)))
    trainer.league = League(size=10, first_share=0.5)
    trainer.league.add(0, {})
    trainer.league.add(10, {})
    assert trainer._league_temperature(0) == 0.0
    assert trainer._league_temperature(10) == 5.0


@pytest.mark.parametrize(
    ("template", "first_prompt"),
    [("board", "<|user|>123\n456\n789\nYou are X."), ("seat_first", "<|user|>You are X.\n123\n456\n789")],
)
def test_board_template_is_used_everywhere_and_recorded_in_the_final_model(
    tmp_path: Path, template: str, first_prompt: str
) -> None:
    from palaestra.agents.llm import template_for_model

    overrides = tiny_overrides(
        tmp_path / "run", **{"train.steps": 1, "sft.steps": 1, "model.template": template}
    )
    Trainer(parse_config({}, overrides)).run()
    final = tmp_path / "run" / "final"
    assert template_for_model(f"hf:{final}").name == template
    config = json.loads((final / "config.json").read_text())
    assert config["palaestra"]["prompt_template"] == template and config["palaestra"]["family"] == "tiny"
    # Policy and league saw the board without the legal list (the prompt ids are what they read).
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    episodes = league_rollouts(tmp_path / "rollouts", **{"model.template": template})
    prompts = [
        tokenizer.decode(turn.generation.prompt_ids)
        for episode in episodes
        for turn in episode.turns
        if turn.generation is not None
    ]
    assert len(prompts) >= 12  # one per episode at least (an untrained policy ends games early)
    assert all("Legal" not in prompt and "You are " in prompt for prompt in prompts)
    assert any(first_prompt in prompt for prompt in prompts)


def test_env_options_reach_every_game_and_the_final_model_records_them(tmp_path: Path) -> None:
    """tic-tac-toe's player perspective in training, league and evaluation games; the final model
    says so (`trained_env_options`), so benches can play it the way it was trained."""
    from palaestra.agents.llm import trained_env_options

    options = {"tic_tac_toe-v0": {"penalty": 1.0, "perspective": "player"}}
    run = tmp_path / "run"
    overrides = {"train.steps": 1, "sft.steps": 1, "model.template": "board", "rollout.env_options": options}
    Trainer(parse_config({}, tiny_overrides(run, **overrides))).run()
    assert trained_env_options(run / "final", "tic_tac_toe-v0") == options["tic_tac_toe-v0"]
    assert trained_env_options(run / "final", "kuhn_poker-v0") == {}
    assert trained_env_options(tmp_path / "nowhere", "tic_tac_toe-v0") == {}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run / "final")
    # The policy second against a legal-only league: its first prompt shows the league's mark.
    second = {"rollout.league_seat_weights": {"tic_tac_toe-v0": [0, 1]}, "rollout.league_legal_only": True}
    episodes = league_rollouts(tmp_path / "rollouts", **overrides, **second)
    prompts = [
        tokenizer.decode(turn.generation.prompt_ids)
        for episode in episodes
        for turn in episode.turns
        if turn.generation is not None and turn.player == "player_1"
    ]
    firsts = [
        tokenizer.decode(next(t for t in e.turns if t.player == "player_1").generation.prompt_ids)
        for e in episodes
    ]
    assert len(firsts) >= 12 and all(prompt.count("T") == 1 and "M" not in prompt for prompt in firsts)
    assert not any("You are" in prompt or "X" in prompt or "O" in prompt for prompt in prompts)


def test_existing_run_needs_resume(tmp_path: Path) -> None:
    config = parse_config({}, tiny_overrides(tmp_path / "run", **{"train.steps": 1, "sft.steps": 0}))
    Trainer(config).run()
    with pytest.raises(TrainError, match="--resume"):
        Trainer(config).run()


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[algorithm]\nestimator = 'nope'\n")
    with pytest.raises(ConfigError, match="estimator 'nope' is unknown"):
        load_config(bad)
    bad.write_text("[train]\nstepz = 3\n")
    with pytest.raises(ConfigError, match=r"train\.stepz"):
        load_config(bad)
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_text('[rollout]\nexecutor = "ray"\nworker_engine = "vllm"\nleague_legal_only = true\n')
    with pytest.raises(ConfigError, match="league_legal_only needs the local engine"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "missing.toml")
    result = subprocess.run(
        [sys.executable, "-m", "palaestra", "train", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1


def test_overrides_reach_into_tables_and_leave_the_file_data_alone() -> None:
    data = {"algorithm": {"estimator_options": {"center_per_player": True}}}
    config = parse_config(
        data,
        {
            "algorithm.estimator_options.center_per_player": False,
            "algorithm.estimator_options.gae_lambda": 0.9,
            "algorithm.value_coef": 0.5,
        },
    )
    assert config.algorithm.estimator_options == {"center_per_player": False, "gae_lambda": 0.9}
    assert data == {"algorithm": {"estimator_options": {"center_per_player": True}}}
    with pytest.raises(ConfigError, match=r"train\.steps is a value, not a table"):
        parse_config({"train": {"steps": 3}}, {"train.steps.x": 1})
    with pytest.raises(ConfigError, match=r"must look like section\.key"):
        parse_config({}, {"train..steps": 1})
    with pytest.raises(ConfigError, match=r"gae_lambda needs a critic: set algorithm\.value_coef > 0 or"):
        parse_config({}, {"algorithm.estimator_options.gae_lambda": 0.9})


def test_self_play_schedule_interpolates_and_rejects_bad_points() -> None:
    rollout = parse_config({}, {"rollout.self_play_schedule": [[60, 0.0], [220, 0.5]]}).rollout
    shares = [rollout.self_play_share(step) for step in (0, 60, 140, 220, 400)]
    assert shares == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.5])
    assert parse_config({}, {"rollout.self_play": 0.2}).rollout.self_play_share(7) == 0.2
    with pytest.raises(ConfigError, match="steps must be >= 0 and increasing"):
        parse_config({}, {"rollout.self_play_schedule": [[10, 0.1], [10, 0.2]]})
    with pytest.raises(ConfigError, match=r"shares must be in \[0, 1\]"):
        parse_config({}, {"rollout.self_play_schedule": [[0, 1.5]]})
    with pytest.raises(ConfigError, match="at least one"):
        parse_config({}, {"rollout.self_play_schedule": []})
    with pytest.raises(ConfigError, match="not both"):
        parse_config({}, {"rollout.self_play": 0.2, "rollout.self_play_schedule": [[0, 0.3]]})


def test_rollouts_follow_the_self_play_schedule(tmp_path: Path) -> None:
    import asyncio

    overrides = {"train.steps": 2, "sft.steps": 0, "rollout.self_play_schedule": [[1, 0.0], [2, 1.0]]}
    trainer = Trainer(parse_config({}, tiny_overrides(tmp_path / "run", **overrides)))

    async def scenario() -> list[tuple[int, float]]:
        trainer._prepare_folder()
        trainer._build(trainer._initial_model_folder())
        trainer.league.add(0, trainer.policy.state_dict())
        counts = []
        try:
            for step in (1, 2):
                episodes, _, info = await trainer._rollouts(step)
                self_play = sum(1 for e in episodes if set(e.agents.values()) == {"policy"})
                counts.append((self_play, info["self_play_share"]))
        finally:
            await trainer.engine.close()
            await trainer.league_engine.close()
        return counts

    assert asyncio.run(scenario()) == [(0, 0.0), (12, 1.0)]


def test_estimator_options_are_checked_against_the_estimator_before_training() -> None:
    shipped = {
        "algorithm": {"estimator": "mars", "estimator_options": {"center_per_player": True, "gamma": 0.8}}
    }
    assert parse_config(shipped).algorithm.estimator_options["gamma"] == 0.8
    with pytest.raises(ConfigError, match="mars takes no option 'gama'; its options: center_per_player"):
        parse_config(shipped, {"algorithm.estimator_options.gama": 0.9})
    # Values too, before training: the estimator checks them on an empty batch.
    with pytest.raises(ConfigError, match=r"algorithm\.estimator_options: gamma must be in \(0, 1\]"):
        parse_config(shipped, {"algorithm.estimator_options.gamma": 1.5})
    with pytest.raises(
        ConfigError, match="grpo takes no option 'center_per_player', 'gamma'; its options: eps"
    ):
        parse_config(shipped, {"algorithm.estimator": "grpo"})
    assert (
        parse_config(
            shipped, {"algorithm.estimator": "grpo", "algorithm.estimator_options": {}}
        ).algorithm.estimator
        == "grpo"
    )


def test_killed_run_resumes_with_identical_next_step(tmp_path: Path) -> None:
    """Kill a run after its step-2 checkpoint; the resumed run's step 3 equals an uninterrupted one."""
    steps = {"train.steps": 4, "sft.steps": 1}
    reference = tmp_path / "reference"
    # Both runs start from the shipped config, as the CLI does.
    Trainer(load_config(default_config_path(), tiny_overrides(reference, **steps))).run()
    expected = {
        m["step"]: without_timing(m) for m in read_jsonl(reference / "metrics.jsonl") if m["phase"] == "rl"
    }

    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "palaestra", "train", "--no-progress"]
    for key, value in tiny_overrides(killed, **steps).items():
        args += ["--set", f"{key}={json.dumps(value) if isinstance(value, dict) else value}"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    marker = killed / "checkpoints" / "step_000002" / "trainer_state.pt"
    deadline = time.monotonic() + 300
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended before the kill: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no step-2 checkpoint within 300 s")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()

    resumed = load_config(default_config_path(), tiny_overrides(killed, **steps))
    result = Trainer(resumed, resume=True).run()
    assert result.steps_done == 4
    got = {m["step"]: without_timing(m) for m in read_jsonl(killed / "metrics.jsonl") if m["phase"] == "rl"}
    assert sorted(got) == [1, 2, 3, 4]
    assert got[3] == expected[3]
    assert got[4] == expected[4]


def test_critic_trains_and_resumes_with_identical_next_step(tmp_path: Path) -> None:
    """A value head on the policy (mars with gae_lambda): its loss falls in the metrics, it is in
    the checkpoint, and a run resumed from step 2 redoes step 3 exactly."""
    import shutil

    import torch

    critic = {
        "train.steps": 3,
        "sft.steps": 1,
        "algorithm.value_coef": 0.5,
        "algorithm.estimator_options": {"gae_lambda": 0.9},
        "algorithm.minibatches": 2,
    }
    run = tmp_path / "run"
    Trainer(parse_config({}, tiny_overrides(run, **critic))).run()
    rl = [m for m in read_jsonl(run / "metrics.jsonl") if m["phase"] == "rl"]
    assert all(math.isfinite(m["loss/value"]) and "value/mean" in m for m in rl)
    assert rl[0]["value/mean"] == 0.0  # the head starts at zero
    assert rl[-1]["value/mean"] != 0.0
    state = torch.load(run / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
    assert state["value_head"]["weight"].abs().sum() > 0

    shutil.rmtree(run / "checkpoints" / "step_000003")
    Trainer(parse_config({}, tiny_overrides(run, **critic)), resume=True).run()
    again = [without_timing(m) for m in read_jsonl(run / "metrics.jsonl") if m["phase"] == "rl"]
    assert [m["step"] for m in again] == [1, 2, 3]
    assert again[2] == without_timing(rl[2])

    shutil.rmtree(run / "checkpoints" / "step_000003")
    with pytest.raises(TrainError, match=r"with a critic; resume with algorithm\.value_coef > 0"):
        Trainer(parse_config({}, tiny_overrides(run, **{"train.steps": 3})), resume=True).run()


def test_value_table_fills_the_baseline_and_resumes_with_identical_next_step(tmp_path: Path) -> None:
    """The lookup-table critic: its values reach mars (gae_lambda), it learns from each step, it is
    in the checkpoint, and a run resumed from step 2 redoes step 3 exactly."""
    import shutil

    import torch

    table = {
        "train.steps": 3,
        "sft.steps": 1,
        "algorithm.value_table": True,
        "algorithm.estimator_options": {"gae_lambda": 1.0, "gamma": 0.8},
    }
    run = tmp_path / "run"
    Trainer(parse_config({}, tiny_overrides(run, **table))).run()
    rl = [m for m in read_jsonl(run / "metrics.jsonl") if m["phase"] == "rl"]
    assert rl[0]["value_table/seen"] == 0.0 and rl[0]["value_table/states"] == 0
    # (An untrained policy mostly ends its games at the first move: few distinct positions yet.)
    assert rl[-1]["value_table/seen"] > 0 and rl[-1]["value_table/states"] >= rl[1]["value_table/states"] >= 1
    state = torch.load(run / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
    assert len(state["value_table"]["states"]) == rl[2]["value_table/states"]

    shutil.rmtree(run / "checkpoints" / "step_000003")
    Trainer(parse_config({}, tiny_overrides(run, **table)), resume=True).run()
    again = [without_timing(m) for m in read_jsonl(run / "metrics.jsonl") if m["phase"] == "rl"]
    assert [m["step"] for m in again] == [1, 2, 3]
    assert again[2] == without_timing(rl[2])

    with pytest.raises(ConfigError, match="two critics"):
        parse_config({}, {**table, "algorithm.value_coef": 0.5})
    with pytest.raises(ConfigError, match="value_table: its values are read by mars's gae_lambda"):
        parse_config({}, {"algorithm.value_table": True})
