"""Checkable reasoning tasks: palaestra's generators (deterministic, exact verifiers, solvers that
score 1.0, disjoint splits), the restricted evaluator, the one-seat env, the reasoning-gym adapter
and `palaestra validate reasoning`."""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction
from typing import Any

import pytest
from typer.testing import CliRunner

from palaestra.agents.base import agent_factory
from palaestra.cli.app import app
from palaestra.core import EnvError, Episode, check_env, make
from palaestra.envs.reasoning.evaluator import ToolError, calculate, evaluate, format_number
from palaestra.envs.reasoning.generators import GENERATORS
from palaestra.envs.reasoning.sources import source_for
from palaestra.envs.reasoning.tasks import SPLITS, split_of
from palaestra.envs.reasoning.validation import validate_reasoning
from palaestra.rollout.episode import play_episode

CELLS = [(name, level) for name, generator in GENERATORS.items() for level in range(1, generator.levels + 1)]


def play(env_id: str, spec: str, seed: int = 0, **options: Any) -> Episode:
    env = make(env_id, **options)
    agents = {"solver": agent_factory(spec)()}
    return asyncio.run(
        play_episode(
            env, agents, episode_id=f"r{seed}", seed=seed, env_id=env_id, agent_specs={"solver": spec}
        )
    )


# ----- generators ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "level"), CELLS)
def test_every_generator_is_deterministic_and_its_solver_scores_one(name: str, level: int) -> None:
    source = source_for(name, level)
    for split, seed in itertools.product(SPLITS, range(40)):
        task = source.task(split, seed)
        assert source.task(split, seed) == task
        assert split_of(task.question) == split
        assert source.solve(task) == task.answer
        assert source.score(task, source.solve(task)) == 1.0
        assert source.score(task, "") == 0.0 and source.score(task, None) == 0.0
        assert all(source.score(task, wrong) == 0.0 for wrong in source.distractors(task, 3))
        if task.choices is not None:
            assert task.answer in task.choices and len(set(task.choices)) == len(task.choices)
    questions = {source.task("train", seed).question for seed in range(40)}
    assert len(questions) > 10  # seeds deal different problems


@pytest.mark.parametrize("name", ["arithmetic", "largest"])
def test_test_problems_never_appear_in_training_even_in_small_problem_spaces(name: str) -> None:
    source = source_for(name, 1)
    train = {source.task("train", seed).question for seed in range(600)}
    test = {source.task("test", seed).question for seed in range(200)}
    assert train and test and not train & test


def test_logic_grid_puzzles_have_exactly_one_solution_and_need_their_clues() -> None:
    source = source_for("logic_grid", 3)
    generator = GENERATORS["logic_grid"]
    for seed in range(20):
        task = source.task("train", seed)
        data = dict(task.data)
        for dropped in range(len(data["clues"])):
            fewer = {**data, "clues": [c for i, c in enumerate(data["clues"]) if i != dropped]}
            with pytest.raises(ToolError, match="solutions"):
                generator.solve_data(fewer)  # every clue is needed: without it the grid is ambiguous


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("arithmetic", " 7.", "7"),
        ("arithmetic", "+7", "7"),
        ("arithmetic", "= -3", "-3"),
        ("arithmetic", "seven", None),
        ("arithmetic", "7 or 8", None),
        ("sorting", "[1, 2, 3]", "1 2 3"),
        ("sorting", "1,2,3", "1 2 3"),
        ("sorting", "one two", None),
        ("logic_grid", "It is Ann.", "Ann"),
        ("logic_grid", "ann", "Ann"),
        ("logic_grid", "Ann or Bob", None),
    ],
)
def test_answers_are_read_in_canonical_form(name: str, text: str, expected: str | None) -> None:
    choices = ("Ann", "Bob") if name == "logic_grid" else None
    assert GENERATORS[name].normalize_text(text, choices) == expected


def test_bad_task_options_are_one_line_env_errors() -> None:
    for options, message in (
        ({"difficulty": 4}, "difficulty"),
        ({"split": "dev"}, "split"),
        ({"task": "no_such_task_here"}, "no_such_task_here"),
        ({"difficulty": 1, "colour": "red"}, "colour"),
    ):
        with pytest.raises(EnvError, match=message) as raised:
            make("reasoning-v0", **options)
        assert "\n" not in str(raised.value)


# ----- the restricted evaluator ---------------------------------------------------------------------
def test_the_calculator_is_exact_and_the_python_tool_evaluates_expressions() -> None:
    assert calculate("3+4*2") == 11
    assert calculate("(18*13)+5+12") == 251
    assert calculate("7/2") == Fraction(7, 2) and format_number(Fraction(7, 2)) == "3.5"
    assert format_number(Fraction(1, 3)).startswith("1/3")
    assert evaluate("sorted([5, 2, 9], reverse=True)") == [9, 5, 2]
    assert evaluate("max([x * x for x in range(5) if x != 4])") == 9
    assert evaluate("'Ann' if 2 > 1 else 'Bob'") == "Ann"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "().__class__",
        "open('/etc/passwd')",
        "9**9999",
        "list(range(10**9))",
        "'x' * 10**7",
        "[y for y in range(3)][0].real",
        "lambda: 1",
        "",
    ],
)
def test_the_python_tool_refuses_what_it_does_not_allow(text: str) -> None:
    with pytest.raises(ToolError) as raised:
        evaluate(text)
    assert "\n" not in str(raised.value)


def test_the_calculator_refuses_anything_but_arithmetic() -> None:
    for text in ("sorted([1])", "'a'", "1 < 2", "x"):
        with pytest.raises(ToolError):
            calculate(text)
    with pytest.raises(ToolError, match="division by zero"):
        calculate("1/0")


# ----- the one-seat env ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env_id", "options"),
    [
        ("reasoning-v0", {}),
        ("reasoning-v0", {"task": "sorting", "difficulty": 3, "split": "test"}),
        ("reasoning:logic_grid?difficulty=3", {}),
        ("reasoning:largest?difficulty=2&choices=false", {}),
    ],
)
def test_reasoning_envs_pass_check_env(env_id: str, options: dict[str, Any]) -> None:
    check_env(make(env_id, **options), seeds=(0, 1))


def test_one_answer_ends_the_episode_with_the_verifiers_score() -> None:
    env = make("reasoning-v0")
    step = env.reset(seed=3)
    turn = step.observations["solver"][-1].content or ""
    assert turn.startswith("Information of Turn-1:\nGAME STATE:\nQ: What is ")
    assert "LEGAL ACTIONS: 0, 1, 2" in turn
    gold = env.facts()["solution"]  # type: ignore[attr-defined]
    step = env.step({"solver": f"Let me add. <answer>{gold}</answer>"})
    assert step.done and step.rewards == {"solver": 1.0}
    assert step.info["reasoning"]["correct"] is True


def test_unreadable_answers_are_asked_again_then_score_zero() -> None:
    env = make("reasoning-v0", retries=1)
    env.reset(seed=0)
    step = env.step({"solver": "no idea"})
    assert not step.done and step.invalid_actions[0].outcome == "retry"
    assert "Invalid action" in (step.observations["solver"][-1].content or "")
    step = env.step({"solver": "<answer>99</answer>"})  # not one of the choices 0-18
    assert step.done and step.invalid_actions[0].outcome == "default" and step.rewards == {"solver": 0.0}


def test_scripted_and_mock_agents_play_the_single_agent_baseline() -> None:
    assert play("reasoning:logic_grid?difficulty=2", "team_solver").returns == {"solver": 1.0}
    assert play("reasoning:sorting", "team_wrong").returns == {"solver": 0.0}
    scores = [play("reasoning:largest", "llm:mock", seed=seed).returns["solver"] for seed in range(30)]
    assert 0 < sum(scores) < 30  # random legal choices: some right, some wrong


# ----- reasoning-gym -----------------------------------------------------------------------------------
def test_reasoning_gym_datasets_score_their_own_answers() -> None:
    pytest.importorskip("reasoning_gym")
    source = source_for("basic_arithmetic", 1)
    for split in SPLITS:
        task = source.task(split, 5)
        assert source.task(split, 5) == task
        assert source.score(task, source.solve(task)) == 1.0
        assert source.score(task, "") == 0.0
    assert source.task("train", 5).question != source.task("test", 5).question
    check_env(make("reasoning:chain_sum?difficulty=1"), seeds=(0, 1))
    episode = play("reasoning:basic_arithmetic?difficulty=1", "team_solver")
    assert episode.returns == {"solver": 1.0}


def test_reasoning_gym_options_are_checked_against_the_dataset_config() -> None:
    pytest.importorskip("reasoning_gym")
    make("reasoning:basic_arithmetic?min_terms=2&max_terms=2")
    with pytest.raises(EnvError, match="min_terms"):
        make("reasoning:basic_arithmetic?colour=red")
    with pytest.raises(EnvError, match="reasoning-gym dataset"):
        make("reasoning:surely_not_a_dataset")


# ----- validation -------------------------------------------------------------------------------------
def test_validate_reasoning_passes_every_generator_and_the_cli_says_so() -> None:
    report = validate_reasoning("", None)
    assert report.checks and not report.failures
    assert {check.task_id.split("/")[0] for check in report.checks} >= set(GENERATORS)
    result = CliRunner().invoke(app, ["validate", "reasoning:sorting"])
    assert result.exit_code == 0, result.output
    assert "tasks valid" in result.output
