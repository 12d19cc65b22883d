"""Branching rollouts: branch points, the group-relative advantage of the chosen turn, the agent
that replays an opening (the trainer-level replay is in test_train_loop.py)."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palaestra.agents.base import AgentView, Decision
from palaestra.core.records import Episode, Generation, Turn
from palaestra.train.branching import (
    BranchingAgent,
    BranchPoint,
    branch_advantages,
    branch_points,
    branch_returns,
)


def test_branch_return_hand_computed() -> None:
    # Turns 0..3 of the branching player; the branch is its turn 1: 0.05 + 0.8*0.05 + 0.64*(1+0.05).
    assert branch_returns([0.05, 0.05, 0.05, 1.05], 1, gamma=0.8) == pytest.approx(0.05 + 0.04 + 0.672)
    assert branch_returns([0.05, -1.0], 0) == pytest.approx(-0.95)


def test_branch_advantages_hand_computed() -> None:
    # Group 1 returns 1, -1 (centered 1, -1); group 2 returns 0.5, 0.5, 0.5 (centered 0): the std
    # of (1, -1, 0, 0, 0) is sqrt(2/5).
    scale = np.sqrt(2 / 5)
    got = branch_advantages([[1.0, -1.0], [0.5, 0.5, 0.5]])
    assert got[0] == pytest.approx([1 / scale, -1 / scale])
    assert got[1] == [0.0, 0.0, 0.0]
    assert branch_advantages([[0.3, 0.3], [2.0]]) == [[0.0, 0.0], [0.0]]
    assert branch_advantages([]) == []


def test_policy_weighted_branch_advantages_hand_computed() -> None:
    # Returns 1 and -1, the policy plays them 3:1: V = 0.5, centred 0.5 and -1.5 (std 1), then
    # times K·w = 2·0.75 and 2·0.25: the on-policy gradient's weights, still summing to zero.
    assert branch_advantages([[1.0, -1.0]], [[0.3, 0.1]])[0] == pytest.approx([0.75, -0.75])
    # Uniform probabilities give the uniform advantages.
    groups = [[1.0, -1.0, 0.2], [0.5, 0.7]]
    uniform = branch_advantages(groups, [[0.2] * 3, [0.4] * 2])
    for a, b in zip(uniform, branch_advantages(groups), strict=True):
        assert a == pytest.approx(b)


groups_strategy = st.lists(
    st.lists(st.floats(-12, 12, allow_nan=False), min_size=1, max_size=9), min_size=1, max_size=8
)


@settings(max_examples=60, deadline=None)
@given(groups_strategy, st.floats(0.1, 10), st.floats(-5, 5))
def test_branch_advantages_center_each_group_and_ignore_scale_and_shift(
    groups: list[list[float]], scale: float, shift: float
) -> None:
    advantages = branch_advantages(groups)
    assert [len(a) for a in advantages] == [len(g) for g in groups]
    flat = np.concatenate([np.asarray(a) for a in advantages])
    for group in advantages:
        assert abs(float(np.mean(group))) < 1e-6  # each position is its own baseline
    assert float(np.std(flat)) == pytest.approx(1.0, abs=1e-6) or np.allclose(flat, 0.0)
    # Better returns in a group get larger advantages.
    for group, values in zip(groups, advantages, strict=True):
        order = np.argsort(group, kind="stable")
        assert all(np.diff(np.asarray(values)[order]) >= -1e-9)
    # Affine changes of every return (a shift per group, one positive scale) change nothing.
    moved = branch_advantages([[scale * r + shift * (i + 1) for r in g] for i, g in enumerate(groups)])
    spread = max(max(g) - min(g) for g in groups)
    if spread * scale > 1e-6 and spread > 1e-6:
        for a, b in zip(advantages, moved, strict=True):
            assert a == pytest.approx(b, abs=1e-5)


def turn(player: str, action: str, legal: list[str], invalid: bool = False) -> Turn:
    return Turn(
        step=0,
        player=player,
        action=action,
        legal_actions=legal,
        invalid={"reason": "illegal"} if invalid else None,
    )


def game(turns: list[Turn], agents: dict[str, str], status: str = "ok") -> Episode:
    return Episode(
        id="000000", env_id="tic_tac_toe-v0", seed=7, agents=agents, turns=turns, returns={}, status=status
    )


AGENTS = {"x": "policy", "o": "league"}


def is_policy(episode: Episode, player: str) -> bool:
    return episode.agents[player] == "policy"


def test_branch_points_take_policy_turns_with_a_choice_and_a_clean_history() -> None:
    episode = game(
        [
            turn("x", "1", ["1", "2", "3"]),
            turn("o", "2", ["2", "3"]),
            turn("x", "3", ["3"]),  # one legal action: nothing to compare
            turn("o", "9", ["4", "5"], invalid=True),
            turn("x", "4", ["4", "5"]),  # after a refused move: not replayable as it was
        ],
        AGENTS,
    )
    points = branch_points([episode], is_policy, random.Random(0), states=10, max_actions=9)
    assert [(p.turn_index, p.player, p.actions) for p in points] == [(0, "x", ("1", "2", "3"))]
    assert (
        branch_points(
            [game(episode.turns, AGENTS, "error")], is_policy, random.Random(0), states=10, max_actions=9
        )
        == []
    )
    # A refused move of the policy is a position like any other (its legal moves are the branches).
    refused = game(
        [turn("x", "1", ["1", "2"]), turn("o", "0", ["2", "3"], invalid=True)], {"x": "league", "o": "policy"}
    )
    points = branch_points([refused], is_policy, random.Random(0), states=10, max_actions=9)
    assert [(p.turn_index, p.player, p.openings(), p.branch_turn) for p in points] == [
        (1, "o", {"x": ("1",), "o": ()}, 0)
    ]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 12), st.integers(2, 9), st.integers(0, 10**6))
def test_branch_points_draw_distinct_positions_and_legal_actions(
    states: int, max_actions: int, seed: int
) -> None:
    legal = [str(c) for c in range(1, 10)]
    episodes = [
        game(
            [turn("x", "5", legal), turn("o", "1", [c for c in legal if c != "5"])],
            {"x": "policy", "o": "policy"},
        ),
        game([turn("x", "1", legal)], AGENTS),
    ]
    points = branch_points(episodes, is_policy, random.Random(seed), states=states, max_actions=max_actions)
    assert len(points) == min(states, 3)
    assert len({(id(p.episode), p.turn_index) for p in points}) == len(points)
    for point in points:
        offered = point.episode.turns[point.turn_index].legal_actions or []
        assert len(point.actions) == min(max_actions, len(offered)) and len(set(point.actions)) == len(
            point.actions
        )
        assert set(point.actions) <= set(offered)


class Recorder:
    """A stand-in model agent: forced answers and free ones, each with a one-token generation."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str | None]] = []

    def _decision(self, action: str) -> Decision:
        return Decision(action=action, generation=Generation(text=action, token_ids=[1, 2], loss_mask=[1, 1]))

    async def act(self, view: AgentView) -> Decision:
        self.calls.append((view.turn, None))
        return self._decision("free")

    async def act_forced(self, view: AgentView, action: str) -> Decision:
        self.calls.append((view.turn, action))
        return self._decision(action)


class Scripted:
    async def act(self, view: AgentView) -> str:
        return "free"


def test_branching_agent_replays_then_plays_and_trains_only_the_chosen_turn() -> None:
    inner = Recorder()
    agent = BranchingAgent(inner, lambda episode, player: (("3", "7"), 1))

    def view(k: int) -> AgentView:
        return AgentView(
            player="x", messages=[], legal_actions=None, turn=k, step=2 * k, episode_id="e", seed=k
        )

    decisions = [asyncio.run(agent.act(view(k))) for k in range(3)]
    assert inner.calls == [(0, "3"), (1, "7"), (2, None)]
    assert [d.action for d in decisions] == ["3", "7", "free"]
    assert [d.generation.loss_mask for d in decisions if d.generation] == [[0, 0], [1, 1], [0, 0]]
    assert [d.generation.token_ids for d in decisions if d.generation] == [[1, 2]] * 3
    # A scripted seat (no act_forced) just answers its forced moves.
    scripted = BranchingAgent(Scripted(), lambda episode, player: (("4",), None))
    assert asyncio.run(scripted.act(view(0))) == Decision(action="4")


def test_branch_point_openings_follow_each_seat() -> None:
    episode = game(
        [turn("x", "1", ["1", "2"]), turn("o", "5", ["2", "5"]), turn("x", "2", ["2", "3"])], AGENTS
    )
    point = BranchPoint(episode, 2, "x", ("2", "3"))
    assert point.openings() == {"x": ("1",), "o": ("5",)} and point.branch_turn == 1


def test_trajectory_head_keeps_the_first_turns_and_their_row_prefix() -> None:
    from palaestra.train.rewards import Trajectory

    trajectory = Trajectory(
        game="g",
        role="x",
        turn_rewards=[0.05, 0.05, 1.05],
        prompt_ids=[[1, 2], [3], [4, 5]],
        token_ids=[[6], [7], [8]],
        logprobs=[[-0.1], [-0.2], [-0.3]],
        loss_mask=[[0], [1], [0]],
        context_starts=[True, False, False],
    )
    head = trajectory.head(2)
    assert head.num_turns == 2 and head.turn_rewards == [0.05, 0.05]
    (row,) = head.token_rows()
    (full,) = trajectory.token_rows()
    assert row.input_ids == full.input_ids[: len(row.input_ids)] == [1, 2, 6, 3, 7]
    assert row.loss_mask == [0, 0, 0, 0, 1]


def test_branching_config_errors_are_one_line() -> None:
    from palaestra.train.config import ConfigError, parse_config

    assert parse_config({}, {"rollout.branch_states": 8}).rollout.branch_opponent == "source"
    cases = {
        "rollout.branch_states needs rollout.executor = 'local'": {"rollout.executor": "ray"},
        "does not work with a critic": {"algorithm.value_coef": 0.5},
        "branch_actions": {"rollout.branch_actions": 1},
        "branch_opponent": {"rollout.branch_opponent": "random"},
    }
    for message, override in cases.items():
        with pytest.raises(ConfigError, match=message) as caught:
            parse_config({}, {"rollout.branch_states": 8, **override})
        assert "\n" not in str(caught.value)
