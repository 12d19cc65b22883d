"""Casts: who sits in each seat in training and evaluation, their one-line errors, and the
recipes of docs/casts.md; only the learner's seats train."""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from palaestra.core.casts import LEAGUE, LEARNER, Cast, default_cast
from palaestra.train import collection, evaluation
from palaestra.train.collection import (
    EnvSeats,
    cast_parts,
    check_remote_memory,
    is_policy,
    rollout_metrics,
    step_parts,
    training_cast,
)
from palaestra.train.config import ConfigError, TrainConfig, parse_config
from palaestra.train.evaluation import EvalSeating, eval_seatings
from palaestra.train.rewards import trajectories_from_episodes
from palaestra.train.run_folder import TrainError
from palaestra.train.trainer import Trainer
from test_train_loop import read_jsonl, tiny_overrides

DOC = Path(__file__).resolve().parents[1] / "docs" / "casts.md"
SHOP_CAST = {"learner": ["agent"], "seats": {"user": [{"agent": "scripted_user"}]}}


def shop(**casts: Any) -> dict[str, Any]:
    return {"rollout": {"envs": ["shop-v0"], "casts": {"shop-v0": casts}}}


def test_every_toml_snippet_of_the_casts_doc_is_a_config_that_parses() -> None:
    snippets = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(snippets) >= 7
    configs = [parse_config(tomllib.loads(snippet)) for snippet in snippets]
    casts = {env_id: cast for config in configs for env_id, cast in config.rollout.casts.items()}
    assert casts["tic_tac_toe-v0"].learner in ("all", {"player_0": 1.0, "player_1": 2.0})
    assert casts["kuhn_poker-v0"].fixed_agents() == ["cfr"]
    assert casts["shop-v0"] == default_cast("shop-v0")
    assert any(config.eval.envs and config.held_out("connect_four-v0") for config in configs)


def test_cast_entries_read_in_every_shape_and_dump_back_to_the_same_cast() -> None:
    cast = Cast.model_validate(
        {"learner": "any", "others": ["self", {"league": 2}, {"agent": "mcts:simulations=10", "weight": 0.5}]}
    )
    assert [(fill.kind, fill.label, fill.weight) for fill in cast.others] == [
        ("self", LEARNER, 1.0),
        ("league", LEAGUE, 2.0),
        ("agent", "mcts:simulations=10", 0.5),
    ]
    assert cast.model_dump()["others"] == [
        {"self": 1.0},
        {"league": 2.0},
        {"agent": "mcts:simulations=10", "weight": 0.5},
    ]
    assert Cast.model_validate(cast.model_dump()) == cast
    config = parse_config(shop(**SHOP_CAST))
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config


def test_seatings_multiply_the_weights_and_merge_self_play() -> None:
    cast = Cast.model_validate({"learner": "any", "others": [{"self": 0.3}, {"league": 0.7}]})
    seatings = dict(cast.seatings(["player_0", "player_1"]))
    assert seatings == pytest.approx(
        {(LEARNER, LEARNER): 0.3, (LEARNER, LEAGUE): 0.35, (LEAGUE, LEARNER): 0.35}
    )
    three = Cast.model_validate(
        {
            "learner": {"a": 1, "b": 3},
            "seats": {"c": ["random", {"agent": "cfr", "weight": 3}]},
            "others": ["league"],
        }
    )
    assert dict(three.seatings(["a", "b", "c"])) == pytest.approx(
        {
            (LEARNER, LEAGUE, "random"): 0.25 * 0.25,
            (LEARNER, LEAGUE, "cfr"): 0.25 * 0.75,
            (LEAGUE, LEARNER, "random"): 0.75 * 0.25,
            (LEAGUE, LEARNER, "cfr"): 0.75 * 0.75,
        }
    )
    # "others" is one draw for every remaining seat: all league, or all random, never a mix.
    joint = Cast.model_validate({"learner": ["a"], "others": ["league", "random"]})
    assert [labels for labels, _ in joint.seatings(["a", "b", "c"])] == [
        (LEARNER, LEAGUE, LEAGUE),
        (LEARNER, "random", "random"),
    ]


def test_cast_parts_draw_one_seating_per_group_and_follow_the_weights() -> None:
    cast = Cast.model_validate({"learner": "any", "others": [{"self": 1}, {"agent": "random", "weight": 3}]})
    players = ["player_0", "player_1"]
    parts = cast_parts(cast, players, episodes=10, group_size=4, env_seed=7, env_number=0)
    assert sum(part.episodes for part in parts) == 10
    assert sorted(part.episodes % 4 for part in parts).count(0) >= len(parts) - 1  # one group is short
    assert parts == cast_parts(cast, players, episodes=10, group_size=4, env_seed=7, env_number=0)
    assert len({part.seed for part in parts}) == len({part.prefix for part in parts}) == len(parts)
    many = cast_parts(cast, players, episodes=20_000, group_size=1, env_seed=3, env_number=0)
    share = {part.labels: part.episodes / 20_000 for part in many}
    assert share[(LEARNER, LEARNER)] == pytest.approx(0.25, abs=0.02)
    assert share[(LEARNER, "random")] == pytest.approx(0.375, abs=0.02)
    assert share[("random", LEARNER)] == pytest.approx(0.375, abs=0.02)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (shop(learner=["agent"]), r"rollout\.casts\['shop-v0'\]: seat 'user' is filled by nobody"),
        (
            shop(learner=["agnt"], others=["scripted_user"]),
            r"seat 'agnt' is not a seat of this env \(its seats: agent, user\)",
        ),
        (shop(learner=["agent"], seats={"usr": ["scripted_user"]}), "seat 'usr' is not a seat of this env"),
        (shop(learner=[]), "learner lists no seat"),
        (shop(learner={}), "learner is an empty table"),
        (shop(learner=["agent"], seats={"user": []}), r"seats\.user lists nobody"),
        (shop(learner=["agent", "user"], seats={"user": ["random"]}), "seat 'user' is the learner's"),
        (shop(learner=["agent"], others=["scripted_usr"]), "unknown agent 'scripted_usr'"),
        (shop(learner=["agent"], others=["llm:tiny?temprature=0.5"]), "unknown option 'temprature'"),
        (shop(learner=["agent"], others=["llm:gpt-4o"]), "unknown model spec 'gpt-4o'"),
        (shop(learner=["agent"], others=["mcts:simulations"]), "options must look like key=value"),
        (
            shop(learner=["agent"], others=[{"agent": "random", "weight": 0}]),
            r"others\.0\.weight: Input should be greater than 0",
        ),
        (
            shop(learner=["agent"], others=[{"self": -1}]),
            r"others\.0\.weight: Input should be greater than 0",
        ),
        (shop(learner={"agent": 0}, others=["scripted_user"]), "learner seat weights must be > 0"),
        (shop(learner=["agent"], others=[{"self": 1, "agent": "random"}]), "a seat entry is one of"),
        (shop(learner="all", others=["random"]), "plays every seat"),
        (
            {"rollout": {"casts": {"kuhn_poker-v0": {"learner": "any", "others": ["cfr"]}}}},
            r"not in rollout\.envs",
        ),
        ({"rollout": {"opponents": ["cfr"]}}, r"rollout\.opponents is gone: .* rollout\.casts"),
        (
            {
                "rollout": {
                    "casts": {"tic_tac_toe-v0": {"learner": "any", "others": ["league"]}},
                    "league_seat_weights": {"tic_tac_toe-v0": [1, 2]},
                }
            },
            r"has a cast; weigh its seats there",
        ),
        (
            {"eval": {"casts": {"tic_tac_toe-v0": {"learner": "any", "others": ["league"]}}}},
            "fixed agents only",
        ),
        (
            {"eval": {"casts": {"kuhn_poker-v0": {"learner": "any", "others": ["cfr"]}}}},
            r"not evaluated \(eval\.envs\)",
        ),
        (
            {"eval": {"opponents": {"tic_tac_toe-v0": ["minimaks"]}}},
            r"eval\.opponents\['tic_tac_toe-v0'\]: unknown agent 'minimaks'",
        ),
    ],
)
def test_bad_casts_are_one_line_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(data)
    assert len(str(caught.value).splitlines()) == 1


def test_llm_user_specs_are_checked_without_building_a_model() -> None:
    from palaestra.models import registry

    before = dict(registry._instances)
    url_user = "llm:openai:some-model@http://127.0.0.1:9/v1?temperature=0.7"
    config = parse_config(shop(learner=["agent"], seats={"user": [url_user, "scripted_user"]}))
    assert config.rollout.casts["shop-v0"].fixed_agents() == [url_user, "scripted_user"]
    assert registry._instances == before  # nothing built (there is no server at that URL)


def test_service_envs_default_to_the_agent_seat_against_the_scripted_user() -> None:
    config = parse_config({"rollout": {"envs": ["shop-v0", "tic_tac_toe-v0"]}})
    assert training_cast(config.rollout, "shop-v0") == Cast.model_validate(SHOP_CAST)
    assert training_cast(config.rollout, "tic_tac_toe-v0") is None  # the game default
    assert default_cast("service:shop") == default_cast("retail-v0") == default_cast("shop-v0")
    envs = EnvSeats({})
    parts = step_parts(config.rollout, envs, 0, self_play_share=0.5, env_seed=11)
    assert [(part.labels, part.episodes) for part in parts] == [((LEARNER, "scripted_user"), 192)]
    # Evaluation: the customer is the scripted user, never `random` (which cannot be a customer).
    assert eval_seatings(config, "shop-v0", ("agent", "user")) == [
        EvalSeating("scripted_user", (LEARNER, "scripted_user"), 0)
    ]
    assert [
        (s.opponent, s.seat) for s in eval_seatings(config, "tic_tac_toe-v0", ("player_0", "player_1"))
    ] == [
        ("random", 0),
        ("random", 1),
        ("minimax", 0),
        ("minimax", 1),
    ]
    # eval.opponents for a service env fill the customer's seat; the learner stays the agent.
    with_llm = parse_config(
        {"rollout": {"envs": ["shop-v0"]}, "eval": {"opponents": {"shop-v0": ["oracle"]}}}
    )
    assert eval_seatings(with_llm, "shop-v0", ("agent", "user")) == [
        EvalSeating("oracle", (LEARNER, "oracle"), 0)
    ]
    # A training cast of fixed agents is the evaluation's too.
    mixed = parse_config(shop(learner=["agent"], seats={"user": ["scripted_user", "decline"]}))
    assert [s.opponent for s in eval_seatings(mixed, "shop-v0", ("agent", "user"))] == [
        "scripted_user",
        "decline",
    ]


def test_ray_workers_refuse_a_memory_their_agents_cannot_keep() -> None:
    ray = {"rollout.executor": "ray"}
    check_remote_memory(parse_config({}, ray), "compact")  # games: the template's own memory
    with pytest.raises(TrainError, match=r"session memory in shop-v0.*model\.memory = \"turn\""):
        check_remote_memory(parse_config({"rollout": {"envs": ["shop-v0"]}}, ray), "compact")
    check_remote_memory(
        parse_config({"rollout": {"envs": ["shop-v0"]}}, {**ray, "model.memory": "turn"}), "compact"
    )


def first_rollouts(out: Path, **extra: Any) -> tuple[Trainer, list[Any]]:
    """A fresh trainer (no cold start, league of the start policy) and its first step's episodes."""
    trainer = Trainer(parse_config({}, tiny_overrides(out, **{"train.steps": 1, "sft.steps": 0, **extra})))

    async def scenario() -> list[Any]:
        trainer._prepare_folder()
        trainer._build(trainer._initial_model_folder())
        trainer.league.add(0, trainer.policy.state_dict())
        try:
            episodes, _, _ = await trainer._rollouts()
            return list(episodes)
        finally:
            await trainer.engine.close()
            await trainer.league_engine.close()

    return trainer, asyncio.run(scenario())


def test_only_the_learner_seats_make_training_rows(tmp_path: Path) -> None:
    cast = {"learner": {"player_0": 1, "player_1": 1}, "others": ["league", "random"]}
    overrides = {
        "rollout.casts": {"tic_tac_toe-v0": cast},
        "rollout.league_legal_only": True,
        "rollout.episodes_per_step": 16,
    }
    trainer, episodes = first_rollouts(tmp_path / "run", **overrides)
    assert len(episodes) == 16
    seatings = Counter(tuple(episode.agents.values()) for episode in episodes)
    assert set(seatings) <= {(LEARNER, LEAGUE), (LEAGUE, LEARNER), (LEARNER, "random"), ("random", LEARNER)}
    assert any(LEAGUE in labels for labels in seatings) and any("random" in labels for labels in seatings)
    league_turns = [t for e in episodes for t in e.turns if e.agents[t.player] == LEAGUE]
    assert league_turns and all(t.generation is not None for t in league_turns)  # model-backed, yet...
    batch = trajectories_from_episodes(episodes, players=is_policy, config=trainer.config.rewards)
    trained = [(trajectory.episode_id, trajectory.role) for trajectory in batch.trajectories]
    policy_seats = [(e.id, p) for e in episodes for p, label in e.agents.items() if label == LEARNER]
    assert sorted(trained) == sorted(policy_seats)  # ...only the policy's seats train, one trajectory each
    everyone = trajectories_from_episodes(episodes, config=trainer.config.rewards)
    assert len(everyone.trajectories) > len(batch.trajectories)  # the league's would have
    metrics = rollout_metrics(episodes, batch.trajectories)
    assert metrics["trajectories"] == len(batch.trajectories) and metrics["league_win_rate"] is not None
    labelled = Counter(f"{p}={a}" for e in episodes for p, a in e.agents.items())
    assert metrics["seatings"] == dict(labelled)  # who sat where, from the records
    assert metrics["task_success_rate"] is None  # a game is not scored by task success


def spy_on_collect(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Every episode the trainer plays, with where it was played (`training`, `evaluation`)."""
    seen: list[tuple[str, Any]] = []
    for module, where in ((collection, "training"), (evaluation, "evaluation")):

        async def spy(*args: Any, _collect: Any = module.collect, _where: str = where, **kwargs: Any) -> Any:
            episodes = await _collect(*args, **kwargs)
            seen.extend((_where, episode) for episode in episodes)
            return episodes

        monkeypatch.setattr(module, "collect", spy)
    return seen


def test_training_a_service_agent_seats_the_learner_as_the_agent_and_the_scripted_user_as_customer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_collect(monkeypatch)
    overrides = {
        "rollout.envs": ["shop-v0"],
        "rollout.casts": {"shop-v0": SHOP_CAST},
        "rollout.episodes_per_step": 6,
        "rollout.engine_batch_size": 32,
        "sft.steps": 0,
        "train.steps": 2,
        "eval.opponents": {},
        "eval.every": 1,
    }
    result = Trainer(parse_config({}, tiny_overrides(tmp_path / "run", **overrides))).run()
    assert result.steps_done == 2
    where = Counter(place for place, _ in seen)
    assert where["training"] == 12 and where["evaluation"] == 4 * 3  # start, step 1, final
    for _, episode in seen:
        assert episode.agents == {"agent": LEARNER, "user": "scripted_user"}
        assert episode.status == "ok" and episode.env_id == "shop-v0"
    rl = [m for m in read_jsonl(tmp_path / "run" / "metrics.jsonl") if m["phase"] == "rl"]
    # One trajectory per episode: the agent's; the scripted customer never trains.
    assert [m["trajectories"] for m in rl] == [6, 6] and all(m["rows"] > 0 for m in rl)
    cells = read_jsonl(tmp_path / "run" / "eval.jsonl")
    assert {(c["opponent"], c["seat"], c["held_out"]) for c in cells} == {("scripted_user", 0, False)}
    assert all(c["errors"] == 0 and c["episodes"] == 4 for c in cells)


def test_held_out_envs_are_evaluated_with_their_own_opponents_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_on_collect(monkeypatch)
    overrides = {
        "sft.steps": 0,
        "train.steps": 1,
        "eval.envs": ["tic_tac_toe-v0", "shop-v0", "prisoners_dilemma-v0"],
        "eval.opponents": {"tic_tac_toe-v0": ["random"], "prisoners_dilemma-v0": ["tit_for_tat"]},
        "eval.env_options": {"shop-v0": {"subset": "test"}},
        "eval.final_episodes": 2,
    }
    Trainer(parse_config({}, tiny_overrides(tmp_path / "run", **overrides))).run()
    cells = read_jsonl(tmp_path / "run" / "eval.jsonl")
    found = {(c["stage"], c["env_id"], c["opponent"], c["seat"], c["held_out"]) for c in cells}
    for stage in ("start", "final"):
        assert {cell for cell in found if cell[0] == stage} == {
            (stage, "tic_tac_toe-v0", "random", 0, False),
            (stage, "tic_tac_toe-v0", "random", 1, False),
            (stage, "shop-v0", "scripted_user", 0, True),
            (stage, "prisoners_dilemma-v0", "tit_for_tat", 0, True),
            (stage, "prisoners_dilemma-v0", "tit_for_tat", 1, True),
        }
    training = {episode.env_id for place, episode in seen if place == "training"}
    assert training == {"tic_tac_toe-v0"}  # held out: never played in training
    shop_episodes = [e for place, e in seen if place == "evaluation" and e.env_id == "shop-v0"]
    assert shop_episodes and all(e.env_options == {"subset": "test"} for e in shop_episodes)


def test_a_family_declares_its_default_cast_and_the_trainer_checks_it_against_the_seats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from palaestra.core import casts, registry
    from palaestra.train.collection import check_training_casts

    # Both registries are restored after the test.
    monkeypatch.setattr(registry._SPECS, "_entries", dict(registry._SPECS._entries))
    monkeypatch.setattr(casts, "_FAMILY_CASTS", dict(casts._FAMILY_CASTS))
    registry.register(
        "cast_probe_board-v0", "palaestra.envs.games.tic_tac_toe:TicTacToe", family="cast-probe"
    )
    casts.register_family_cast("cast-probe", {"learner": ["player_1"], "others": ["random"]})
    config = parse_config({"rollout": {"envs": ["cast_probe_board-v0"]}})
    assert training_cast(config.rollout, "cast_probe_board-v0") == casts.family_cast("cast-probe")
    check_training_casts(config.rollout, EnvSeats({}))
    assert eval_seatings(config, "cast_probe_board-v0", ("player_0", "player_1")) == [
        EvalSeating("random", ("random", LEARNER), 1)
    ]
    casts.register_family_cast("cast-probe", {"learner": ["boss"], "others": ["random"]})
    with pytest.raises(TrainError, match="the cast of cast_probe_board-v0: seat 'boss' is not a seat"):
        check_training_casts(config.rollout, EnvSeats({}))


def test_palaestra_train_reports_a_bad_cast_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text('[rollout]\nenvs = ["shop-v0"]\n\n[rollout.casts."shop-v0"]\nlearner = ["agent"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "palaestra", "train", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "seat 'user' is filled by nobody" in lines[0]


def test_rollout_metrics_count_task_success_of_the_learner_seat(tmp_path: Path) -> None:
    from palaestra.rollout.runner import RunConfig, iter_episodes, run_sync

    played = []
    for teacher in ("oracle", "decline"):
        config = RunConfig(env_id="shop-v0", agents=[teacher, "scripted_user"], episodes=4)
        run_sync(config, tmp_path / teacher)
        played += list(iter_episodes(tmp_path / teacher / "episodes.jsonl"))
    seats = {"agent": LEARNER, "user": "scripted_user"}
    as_learner = [e.model_copy(update={"agents": seats}) for e in played]
    metrics = rollout_metrics(as_learner, [])
    # The oracle does every task; always declining passes only the tasks that call for a decline.
    declined = sum(e.returns["agent"] >= 1.0 for e in played[4:])
    assert metrics["task_success_rate"] == (4 + declined) / 8
    assert metrics["seatings"] == {"agent=policy": 8, "user=scripted_user": 8}
