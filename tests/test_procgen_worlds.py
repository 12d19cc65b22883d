"""The other procedural worlds: XLand-style tasks, multi-agent crafting with a knowledge-graph memory,
wildfire, Crafter and TextWorld as text; `llm:mock` plays each through `palaestra run`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from palaestra.agents.base import AgentView, agent_factory
from palaestra.agents.procgen import KnowledgeGraph, KnowledgeGraphMemory, SolverAgent
from palaestra.cli.app import app
from palaestra.core.checks import check_env
from palaestra.core.records import Episode
from palaestra.core.registry import EnvError, make
from palaestra.core.validation import find_validator
from palaestra.envs.procgen.validation import everyone, idle, play, solver
from palaestra.eval.procgen import family_section, summarize, team_section
from palaestra.rollout.runner import RunConfig, play_in_memory


def episodes(env_id: str, agents: list[str], n: int, seed: int = 5_000, **options: Any) -> list[Episode]:
    config = RunConfig(
        env_id=env_id, env_options=options, agents=agents, episodes=n, seed=seed, concurrency=64
    )
    played = asyncio.run(play_in_memory(config, {a: agent_factory(a) for a in set(agents)}))
    assert all(e.status == "ok" for e in played), played[0].cause
    return played


def rate(played: list[Episode]) -> float:
    return sum(e.returns["player_0"] >= 1 for e in played) / len(played)


# ----- XLand-style tasks --------------------------------------------------------------------------------
def test_xland_tasks_are_generated_by_seed_and_pass_check_env() -> None:
    for options in ({}, {"family": "pair", "players": 3, "difficulty": 4}, {"family": "tug", "players": 2}):
        env = make("xland_text-v0", **options)
        texts = [
            "\n".join(m.content or "" for m in env.reset(seed=seed).observations["player_0"])
            for seed in (1, 1, 2)
        ]
        assert texts[0] == texts[1] != texts[2]
        check_env(env, seeds=(0, 1))


def test_xland_gold_scores_one_on_training_and_held_out_families() -> None:
    found = find_validator("xland")
    assert found is not None
    validator, _ = found
    tasks = [
        f"xland:{family}?difficulty={d}&players={p}#seed={s}"
        for family, p in (("craft", 2), ("race", 2), ("craft_deliver", 1), ("gather", 3))
        for d in (1, 5)
        for s in (0, 1)
    ]
    report = validator("", tasks)
    assert len(report.checks) == len(tasks) and not report.failures, [c.problems for c in report.failures]


def test_xland_difficulty_falls_for_a_fixed_agent_and_families_split_for_transfer() -> None:
    rates = [rate(episodes("xland_text-v0", ["random"], 150, difficulty=d, max_turns=8)) for d in (1, 3, 5)]
    assert rates[0] > rates[1] > rates[2], rates
    held_out = episodes("xland_text-v0", ["procgen_solver"], 12, family="test")
    trained = episodes("xland_text-v0", ["procgen_solver"], 12, family="train")
    assert all(e.info["procgen"]["held_out"] for e in held_out)
    assert not any(e.info["procgen"]["held_out"] for e in trained)
    section = family_section(held_out + trained)
    assert section is not None
    splits = {row[0]: row[1] for row in section.rows}
    assert splits.get("gather") == "held-out" and splits.get("fetch", "training") == "training"


def test_xland_competitive_tasks_have_a_winner_and_bad_options_are_one_line() -> None:
    env = make("xland_text-v0", family="race", players=2, difficulty=2)
    step = play(env, 3, {"player_0": solver, "player_1": idle})
    assert step.info["returns"] == {"player_0": 1.0, "player_1": 0.0}
    assert step.info["procgen"]["winner"] == "player_0" and step.info["procgen"]["solo_rounds"]
    for options, expected in (({"family": "race"}, "competitive"), ({"family": "nope"}, "unknown family")):
        with pytest.raises(EnvError, match=expected) as caught:
            make("xland_text-v0", **options)
        assert "\n" not in str(caught.value)


# ----- crafting together, wildfire ------------------------------------------------------------------------
def test_a_bigger_crafting_team_needs_fewer_rounds_and_doing_nothing_fails() -> None:
    rounds = {}
    for players in (1, 3):
        env = make("craft_together-v0", players=players)
        check_env(env, seeds=(0,))
        steps = [play(env, seed, everyone(env, solver)) for seed in range(4)]
        assert all(s.info["procgen"]["success"] for s in steps)
        rounds[players] = sum(s.info["procgen"]["rounds"] for s in steps)
        assert not play(env, 0, everyone(env, idle)).info["procgen"]["success"]
    assert rounds[3] < rounds[1]


def test_crafting_stocks_are_shared_and_messages_reach_teammates() -> None:
    env = make("craft_together-v0", players=2, difficulty=1)
    step = env.reset(seed=0)
    env.core.waiting = step.to_act
    env.state.team = type(env.state.team)(
        ("forest", "forest"), ((), ()), (("wood", 1), ("stone", 0), ("iron", 0))
    )
    step = env.step({"player_0": "gather", "player_1": "say need wood"})
    assert env.state.team.left("wood") == 0 and env.state.team.bag(0) == {"wood": 1}
    assert "player_1: need wood" in (step.observations["player_0"][-1].content or "")
    assert "gather" not in (env.legal_actions("player_1") or [])  # the shared stock ran out


def test_the_knowledge_graph_memory_keeps_facts_and_shows_them_to_the_agent() -> None:
    env = make("craft_together-v0", players=2)
    step = env.reset(seed=2)
    inner = SolverAgent()
    wrapped = KnowledgeGraphMemory(inner)
    for turn in range(3):
        actions = {}
        for player in step.to_act:
            view = AgentView(
                player=player,
                messages=list(step.observations.get(player, [])),
                legal_actions=env.legal_actions(player),
                turn=turn,
                step=turn,
                episode_id="0",
                seed=turn,
                privileged=env.privileged_view(player),
            )
            if player == "player_1":
                actions[player] = "say need stone" if turn == 0 else str(asyncio.run(wrapped.act(view)))
                shown = wrapped._with_memory(view)
                if turn:
                    assert "MEMORY: " in (shown.messages[-1].content or "")
                    assert shown.privileged.memory() == wrapped.graph.lines()
            else:
                actions[player] = env.solver_action(player)
        step = env.step(actions)
    facts = wrapped.graph.lines(50)
    assert any(line.startswith("team must make iron_pickaxe") for line in facts)
    assert any(line.startswith("pickaxe needs 2 wood") for line in facts)
    graph = KnowledgeGraph()
    graph.update({"messages": [{"from": "player_1", "kind": "need", "item": "stone"}]})
    graph.update({"resources": {"wood": ("forest", 4)}})
    graph.update({"resources": {"wood": ("forest", 3)}})  # a newer fact replaces the older one
    assert graph.lines() == ["wood at forest (3 left)", "player_1 need stone"]
    assert asyncio.run(agent_factory("kg_memory:llm:mock")().act(view)) is not None


def test_wildfire_gold_contains_the_fire_and_doing_nothing_burns_the_forest() -> None:
    for players in (2, 4):
        env = make("wildfire-v0", players=players)
        check_env(env, seeds=(0,))
        for seed in range(3):
            gold = play(env, seed, everyone(env, solver)).info["procgen"]
            null = play(env, seed, everyone(env, idle)).info["procgen"]
            assert gold["success"] and not null["success"]
            assert gold["measure"] > null["measure"] and gold["measure"] <= gold["upper_bound"]
    played = episodes("wildfire-v0", ["procgen_solver"] * 3, 3)
    section = team_section(played)
    assert section is not None and section.rows[0][0] == "wildfire"


# ----- Crafter and TextWorld through their real packages ---------------------------------------------------
def test_crafter_as_text_unlocks_achievements_with_the_scripted_route() -> None:
    pytest.importorskip("crafter")
    env = make("crafter:place_table?area=32")
    step = env.reset(seed=1)
    text = step.observations["player_0"][-1].content or ""
    assert "Facing:" in text and "health 9" in text and "LEGAL ACTIONS: noop, move_left" in text
    gold = play(env, 1, everyone(env, solver))
    assert gold.info["returns"]["player_0"] == 1.0
    assert {"collect_wood", "place_table"} <= set(gold.info["procgen"]["achievements"])
    assert play(env, 1, everyone(env, idle)).info["returns"]["player_0"] == 0.0
    sections = summarize(episodes("crafter:collect_wood?area=32&length=30", ["procgen_solver"], 2))
    assert any(s.title == "Crafter achievements" for s in sections)


@pytest.mark.slow
def test_textworld_games_are_generated_at_reset_and_the_walkthrough_wins() -> None:
    pytest.importorskip("textworld")
    env = make("textworld:coin_collector?level=2")
    gold = play(env, 0, everyone(env, solver))
    assert gold.info["procgen"]["success"] and gold.info["returns"]["player_0"] == pytest.approx(1.0)
    assert play(env, 0, everyone(env, idle)).info["returns"]["player_0"] == 0.0
    check_env(env, seeds=(0,))


# ----- every world through the CLI with the mock model -------------------------------------------
@pytest.mark.parametrize(
    ("env_id", "seats"),
    [
        ("lumina:list?size=3&depth=2", 1),
        ("lumina:tree?oracle=plan", 1),
        ("lumina:grid?size=4&depth=1&oracle=state+history", 1),
        ("xland_text-v0", 1),
        ("xland:race?players=2", 2),
        ("craft_together-v0", 2),
        ("wildfire-v0", 3),
        ("crafter:collect_wood?area=32&length=15", 1),
    ],
)
def test_the_mock_llm_plays_every_world_through_palaestra_run(
    tmp_path: Path, env_id: str, seats: int
) -> None:
    if env_id.startswith("crafter:"):
        pytest.importorskip("crafter")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", env_id, "-a", ",".join(["llm:mock"] * seats), "-n", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "success % (95% CI)" in result.output
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    assert all("procgen" in r["info"] for r in records)
    assert not any(t["invalid"] for r in records for t in r["turns"])  # the mock picks legal actions
