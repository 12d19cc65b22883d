"""Team worlds: conformance, the protocols, scripted members (the stubborn-and-sycophants debate),
the team scorecard against hand counts, tools, `palaestra validate teams`, and LLM agents playing
every world end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from typer.testing import CliRunner

from palaestra.agents.base import AgentView, agent_factory
from palaestra.cli.app import app
from palaestra.core import EnvError, Episode, check_env, make
from palaestra.envs.teams import TEAM_WORLDS
from palaestra.envs.teams.base import find_tool_call, majority, run_tool
from palaestra.envs.teams.validation import validate_teams
from palaestra.eval.teams import summarize, team_stats
from palaestra.rollout.episode import play_episode


def play(env_id: str, specs: Sequence[Any], seed: int = 0, **options: Any) -> Episode:
    """One episode through the runner's loop; a spec may be an agent object."""
    env = make(env_id, **options)
    agents = {
        seat: agent_factory(spec)() if isinstance(spec, str) else spec
        for seat, spec in zip(env.players, specs, strict=True)
    }
    labels = {
        seat: spec if isinstance(spec, str) else type(spec).__name__
        for seat, spec in zip(env.players, specs, strict=True)
    }
    return asyncio.run(
        play_episode(env, agents, episode_id=f"t{seed}", seed=seed, env_id=env_id, agent_specs=labels)
    )


def answers(episode: Episode) -> list[tuple[str, int, str | None]]:
    return [
        (m["seat"], m["round"], m["answer"]) for m in episode.info["team"]["moves"] if m["kind"] == "answer"
    ]


class Babbler:
    """Says something unreadable first in every turn, then the right answer."""

    async def act(self, view: AgentView) -> str:
        facts = view.privileged.facts()
        refused = any("Invalid action" in (m.content or "") for m in view.messages)
        return f"<answer>{facts['solution']}</answer>" if refused else "I do not know"


class Calculating:
    """Calls the calculator once per turn, then answers what it returned."""

    async def act(self, view: AgentView) -> str:
        facts = view.privileged.facts()
        if facts["tool_results"]:
            return f"<answer>{facts['tool_results'][-1].rsplit('= ', 1)[1]}</answer>"
        return str(facts["command"])


class ToolAddict:
    """Calls a tool every time it is asked."""

    async def act(self, view: AgentView) -> str:
        return "calc: 1+1"


# ----- conformance ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env_id", "options"),
    [
        ("debate-v0", {}),
        ("debate-v0", {"final": "judge", "visibility": "ring", "debaters": 4, "show_reasons": True}),
        ("debate-v0", {"task": "sorting", "early_stop": True, "rounds": 3}),
        ("dynadebate-v0", {"verify": "always"}),
        ("dynadebate-v0", {"task": "logic_grid", "difficulty": 3, "critic": False, "paths": False}),
        ("critic_loop-v0", {"rounds": 2, "split": "test"}),
        ("malt-v0", {"passes": 2, "task": "largest"}),
        ("agentflow-v0", {"task": "sorting", "steps": 2}),
        ("discussion-v0", {"paradigm": "report", "members": 4}),
        ("discussion-v0", {"paradigm": "relay", "final": "last", "choices": False}),
        ("discussion-v0", {"paradigm": "debate", "rounds": 3}),
    ],
)
def test_team_worlds_pass_check_env(env_id: str, options: dict[str, Any]) -> None:
    check_env(make(env_id, **options), seeds=(0, 1))


def test_every_team_world_is_registered_in_the_teams_family() -> None:
    from palaestra.core import registered

    assert {s.id for s in registered() if s.family == "teams"} == set(TEAM_WORLDS)
    for env_id, (_, seats, _, _) in TEAM_WORLDS.items():
        assert len(make(env_id).players) == seats


@pytest.mark.parametrize(
    ("env_id", "options", "message"),
    [
        ("debate-v0", {"debaters": 1}, "debaters"),
        ("debate-v0", {"visibility": "secret"}, "visibility"),
        ("debate-v0", {"final": "vote"}, "final"),
        ("dynadebate-v0", {"final": "judge"}, "majority"),
        ("dynadebate-v0", {"verify": "sometimes"}, "verify"),
        ("discussion-v0", {"paradigm": "gossip"}, "paradigm"),
        ("malt-v0", {"passes": 0}, "passes"),
        ("agentflow-v0", {"split": "dev"}, "split"),
        ("critic_loop-v0", {"colour": "red"}, "colour"),
    ],
)
def test_bad_team_options_are_one_line_env_errors(env_id: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvError, match=message) as raised:
        make(env_id, **options)
    assert "\n" not in str(raised.value)


def test_a_team_world_deals_the_same_task_as_the_single_agent_env() -> None:
    for seed in range(5):
        team = make("malt-v0", task="logic_grid", difficulty=2, split="test")
        single = make("reasoning-v0", task="logic_grid", difficulty=2, split="test")
        team.reset(seed=seed)
        single.reset(seed=seed)
        assert team.facts("generator")["question"] == single.facts()["question"]  # type: ignore[attr-defined]


# ----- the must-show debate ----------------------------------------------------------------------------
@pytest.mark.parametrize("stubborn_seat", [0, 1, 2])
@pytest.mark.parametrize("task", ["arithmetic", "logic_grid"])
def test_one_correct_stubborn_member_and_two_sycophants_end_correct(stubborn_seat: int, task: str) -> None:
    specs = ["sycophant", "sycophant", "sycophant"]
    specs[stubborn_seat] = "stubborn"
    for seed in range(5):
        episode = play("debate-v0", specs, seed, rounds=3, task=task, difficulty=2)
        assert episode.status == "ok", episode.cause
        record = episode.info["team"]
        assert record["correct"], answers(episode)
        first = [a for seat, r, a in answers(episode) if r == 1 and seat != f"debater_{stubborn_seat}"]
        assert all(a != record["task"]["answer"] for a in first)  # the sycophants started wrong
        assert episode.returns == dict.fromkeys(make("debate-v0").players, 1.0)


def test_sycophants_follow_a_wrong_stubborn_member_too() -> None:
    for seed in range(5):
        episode = play("debate-v0", ["sycophant", "stubborn:correct=false", "sycophant"], seed, rounds=3)
        assert not episode.info["team"]["correct"]
        assert {a for _, r, a in answers(episode) if r == 3} == {episode.info["team"]["final"]}


def test_the_judge_picks_among_the_last_round_and_majority_ties_go_to_the_first_seat() -> None:
    episode = play("debate-v0", ["team_wrong", "team_solver", "team_solver", "team_solver"], final="judge")
    assert episode.info["team"]["correct"] and episode.info["team"]["rule"] == "judge"
    assert majority([None, "b", "a", "a", "b"]) == "b"
    assert majority([None, None]) is None


# ----- the scorecard, against hand counts ------------------------------------------------------------------
def test_flips_consensus_and_solo_baseline_match_a_hand_count() -> None:
    # arithmetic d1 seed 0 is 3+4=7; the sycophants start on 8 and 6 (their seats' wrong guesses).
    episode = play("debate-v0", ["sycophant", "sycophant", "stubborn"], 0, rounds=3)
    assert answers(episode) == [
        ("debater_0", 1, "8"), ("debater_1", 1, "6"), ("debater_2", 1, "7"),
        ("debater_0", 2, "6"), ("debater_1", 2, "8"), ("debater_2", 2, "7"),
        ("debater_0", 3, "7"), ("debater_1", 3, "7"), ("debater_2", 3, "7"),
    ]  # fmt: skip
    (stats,) = team_stats([episode])
    assert (stats.episodes, stats.correct) == (1, 1)
    assert (stats.answers, stats.changed, stats.right_to_wrong, stats.wrong_to_right) == (9, 4, 0, 2)
    assert (stats.solo_answers, stats.solo_correct) == (3, 1)
    assert stats.differences == [pytest.approx(1 - 1 / 3)]
    assert stats.consensus == [1.0] and stats.unanimous == 1
    assert stats.turns == {"debater_0": 3, "debater_1": 3, "debater_2": 3}


def test_a_right_answer_turned_wrong_is_a_right_to_wrong_flip_and_consensus_counts_dissent() -> None:
    episode = play("debate-v0", ["sycophant:first=right", "team_wrong", "team_wrong"], 0, rounds=2)
    (stats,) = team_stats([episode])
    assert answers(episode)[0] == ("debater_0", 1, "7") and answers(episode)[3] == ("debater_0", 2, "8")
    assert (stats.right_to_wrong, stats.wrong_to_right, stats.changed) == (1, 0, 1)
    assert not episode.info["team"]["correct"] and stats.consensus == [1.0]
    split = play("debate-v0", ["team_solver", "team_wrong", "team_wrong"], 0)
    (dissent,) = team_stats([split])
    assert dissent.consensus == [pytest.approx(2 / 3)] and dissent.unanimous == 0


def test_monopolization_counts_each_seats_turns_and_tokens() -> None:
    # Two rounds; the babbler is refused once per round (4 words), then answers (1 word).
    episodes = [play("debate-v0", ["team_solver", Babbler(), "team_solver"], seed) for seed in range(3)]
    (stats,) = team_stats(episodes)
    assert stats.turns == {"debater_0": 6, "debater_1": 12, "debater_2": 6}
    assert stats.tokens == {"debater_0": 6, "debater_1": 30, "debater_2": 6}
    assert stats.share(stats.turns, "debater_1") == pytest.approx(0.5)
    assert stats.share(stats.tokens, "debater_0") == pytest.approx(6 / 42)
    assert stats.refused == 6 and stats.correct == 3


def test_problem_drift_counts_replies_that_leave_the_task() -> None:
    class Chatty:
        async def act(self, view: AgentView) -> str:
            return "Nice weather today, friends."

    episode = play("discussion-v0", ["team_solver", Chatty(), "team_solver"], 0, rounds=2)
    (stats,) = team_stats([episode])
    assert (stats.judged, stats.drifted) == (6, 2)
    assert episode.info["team"]["correct"]


def test_the_summary_sections_and_palaestra_run_show_the_team_tables(tmp_path: Any) -> None:
    episode = play("malt-v0", ["team_solver", "team_wrong", "team_solver"], 0)
    titles = [section.title for section in summarize([episode])]
    assert titles == ["team accuracy", "answer flips", "monopolization", "team cost per episode"]
    result = CliRunner().invoke(
        app,
        [
            "run",
            "critic_loop-v0",
            "--agents",
            "team_wrong,team_solver",
            "--episodes",
            "4",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    for title in ("team accuracy", "answer flips", "monopolization", "team cost per episode"):
        assert title in result.output


# ----- pipelines and tools ---------------------------------------------------------------------------------
def test_malt_refiner_repairs_a_wrong_generator_after_a_fair_verdict() -> None:
    episode = play("malt-v0", ["team_wrong", "team_solver", "team_solver"], 2)
    moves = episode.info["team"]["moves"]
    assert [m["kind"] for m in moves] == ["answer", "verdict", "answer"]
    assert moves[1]["choice"] == "wrong" and episode.info["team"]["correct"]
    (stats,) = team_stats([episode])
    assert stats.wrong_to_right == 1 and stats.solo_answers == 1 and stats.solo_correct == 0


def test_the_critic_loop_stops_at_the_first_approval() -> None:
    episode = play("critic_loop-v0", ["team_solver", "team_solver"], 0)
    assert [m["kind"] for m in episode.info["team"]["moves"]] == ["answer", "review"]
    looping = play("critic_loop-v0", ["team_wrong", "team_solver"], 0, rounds=3)
    assert [m["kind"] for m in looping.info["team"]["moves"]] == ["answer", "review"] * 3
    assert looping.info["team"]["rule"] == "last" and not looping.info["team"]["correct"]


def test_agentflow_keeps_a_memory_of_tool_results() -> None:
    episode = play("agentflow-v0", ["team_solver"] * 4, 1, task="sorting")
    moves = episode.info["team"]["moves"]
    assert [m["kind"] for m in moves] == ["plan", "tool", "stop", "answer"]
    assert moves[1]["tool"].startswith("python: sorted(") and moves[1]["result"].startswith("[")
    assert episode.info["team"]["correct"] and episode.info["team"]["tool_calls"]["executor"] == 1
    lost = play("agentflow-v0", ["team_solver", "team_wrong", "team_solver", "team_solver"], 1, steps=2)
    assert [m["kind"] for m in lost.info["team"]["moves"]][:4] == ["plan", "tool", "stop", "plan"]


def test_debaters_call_the_verifier_tool_and_are_cut_off_past_the_limit() -> None:
    episode = play("dynadebate-v0", [Calculating()] * 3 + ["team_solver"], 0, verify="always")
    assert episode.info["team"]["correct"]
    (stats,) = team_stats([episode])
    assert stats.tool_calls == 6  # three debaters, two rounds, one call each
    addicted = play(
        "dynadebate-v0", [ToolAddict(), "team_solver", "team_solver", "team_solver"], 0, verify="always"
    )
    refused = [t.invalid["reason"] for t in addicted.turns if t.invalid and t.player == "debater_0"]
    assert refused and "no tool calls left" in refused[0]
    assert addicted.info["team"]["tool_calls"]["debater_0"] == 4  # the limit, twice


def test_tool_calls_are_read_from_text_and_native_calls() -> None:
    from palaestra.core.messages import Message, ToolCall

    assert find_tool_call("Let me see.\ncalc: 3+4*2") == ("calc", "3+4*2")
    assert find_tool_call("<answer>python: max([3, 7])</answer>") == ("python", "max([3, 7])")
    native = Message(role="assistant", tool_calls=(ToolCall("c1", "calc", {"expression": "2+2"}),))
    assert find_tool_call(native) == ("calc", "2+2")
    assert find_tool_call("<answer>7</answer>") is None
    assert run_tool("calc", "3+4*2") == "11" and run_tool("python", "sorted([3, 1])") == "[1, 3]"
    assert run_tool("python", "__import__('os')").startswith("error:")


def test_every_discussion_paradigm_shows_each_member_what_it_may_see() -> None:
    seen: dict[str, list[list[str]]] = {}
    for paradigm in ("memory", "report", "relay", "debate"):
        env = make("discussion-v0", paradigm=paradigm, members=3, rounds=2)
        step = env.reset(seed=0)
        shown = []
        while not step.done:
            (seat,) = step.to_act
            text = step.observations[seat][-1].content or ""
            shown.append(
                [
                    line.split(" said:")[0]
                    for line in text.splitlines()
                    if " said:" in line and line.startswith("member_")
                ]
            )
            step = env.step({seat: f"<answer>{env.facts(seat)['solution']}</answer> from {seat}"})  # type: ignore[attr-defined]
        seen[paradigm] = shown
    assert seen["memory"][5] == ["member_0", "member_1", "member_0", "member_1"]  # member_2, round 2
    assert seen["report"][1] == ["member_0"] and seen["report"][5] == ["member_0", "member_0"]
    assert seen["report"][3] == ["member_1", "member_2"]  # the hub reads everyone
    assert seen["relay"][5] == ["member_1"]
    assert seen["debate"][5] == ["member_0", "member_1"]


# ----- validation, and LLM members -------------------------------------------------------------------------
def test_validate_teams_passes_every_world_and_the_cli_says_so() -> None:
    report = validate_teams("", None)
    assert report.checks and not report.failures
    worlds = {check.task_id.split("[")[0].split("/")[0] for check in report.checks}
    assert worlds == {*TEAM_WORLDS, "coa:debate-v0", "coa:agentflow-v0"}
    result = CliRunner().invoke(app, ["validate", "teams:malt"])
    assert result.exit_code == 0 and "tasks valid" in result.output


def test_scripted_members_refuse_envs_that_are_not_team_worlds() -> None:
    episode = play("tic_tac_toe-v0", ["team_solver", "random"])
    assert episode.status == "error" and "team worlds" in (episode.cause or "")


@pytest.mark.parametrize("env_id", sorted(TEAM_WORLDS))
def test_the_mock_llm_plays_every_team_world_end_to_end(env_id: str) -> None:
    env = make(env_id)
    for seed in range(2):
        episode = play(env_id, ["llm:mock"] * len(env.players), seed)
        assert episode.status == "ok", episode.cause
        assert "team" in episode.info and episode.terminated
        assert {t.player for t in episode.turns} == set(env.players)
        assert all(t.generation is not None for t in episode.turns)


def test_the_tiny_model_plays_a_team_world_end_to_end() -> None:
    spec = "llm:tiny?max_new_tokens=6&temperature=1.0"
    episode = play("malt-v0", [spec] * 3, 0, retries=0)
    assert episode.status == "ok", episode.cause
    assert {t.player for t in episode.turns} == {"generator", "verifier", "refiner"}
    assert all(t.generation is not None and t.generation.token_ids for t in episode.turns)
    assert "team" in episode.info


# ----- Chain-of-Agents: one seat, every role ----------------------------------------------------------------
@pytest.mark.parametrize(
    "env_id", ["coa:malt-v0", "coa:debate-v0?final=judge", "coa:agentflow-v0?task=sorting"]
)
def test_one_seat_plays_every_role_of_a_team_world(env_id: str) -> None:
    check_env(make(env_id), seeds=(0, 1))
    episode = play(env_id, ["team_solver"], 0)
    assert episode.status == "ok" and episode.returns == {"team": 1.0}
    roles = [m["seat"] for m in episode.info["team"]["moves"]]
    assert len(set(roles)) > 1 and {t.player for t in episode.turns} == {"team"}
    assert play(env_id, ["llm:mock"], 1).status == "ok"


def test_one_seat_debaters_of_a_round_do_not_see_each_others_answers() -> None:
    env = make("coa:debate-v0")
    step = env.reset(seed=0)
    shown = []
    while not step.done:
        shown.append("\n".join(m.content or "" for m in step.observations.get("team", [])))
        step = env.step({"team": "<answer>8</answer>"})
    assert [text.count("said: 8") for text in shown] == [0, 0, 0, 3, 3, 3]  # others' answers + "You said"
    assert shown[1].startswith("You are taking part") and "debater_1, round 1 of 2" in shown[1]
    with pytest.raises(EnvError, match="not a team world"):
        make("coa:tic_tac_toe-v0")


@pytest.mark.slow
def test_a_model_imitates_whole_team_traces_in_one_context(tmp_path: Any) -> None:
    command = ["sft", f"{tmp_path}/model", "--env", "coa:malt-v0", "--agents", "team_solver"]
    result = CliRunner().invoke(app, [*command, "--episodes", "8", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "from 8 of 8 trajectories" in result.output  # one row per episode: every role in one context
