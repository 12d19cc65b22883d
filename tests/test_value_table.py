"""The lookup-table critic: context keys, shrunk running means, eviction, state round trip."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palaestra.train.rewards import Trajectory
from palaestra.train.value_table import ValueTable


def trajectory(prompts: list[list[int]], answers: list[list[int]] | None = None, *, fresh: bool = True,
               role: str = "player_0", game: str = "g") -> Trajectory:  # fmt: skip
    answers = answers if answers is not None else [[9]] * len(prompts)
    return Trajectory(
        game=game,
        role=role,
        turn_rewards=[0.0] * len(prompts),
        prompt_ids=prompts,
        token_ids=answers,
        context_starts=[fresh] * len(prompts) if fresh else [],
    )


def test_keys_are_the_exact_context_of_each_turn() -> None:
    keys = ValueTable.state_keys
    # A fresh context every turn: a turn's key is its prompt alone, wherever it stands.
    assert keys(trajectory([[1, 2], [3]]))[1] == keys(trajectory([[3]]))[0]
    assert keys(trajectory([[1, 2]]))[0] != keys(trajectory([[1, 3]]))[0]
    assert keys(trajectory([[1, 2]]))[0] != keys(trajectory([[1, 2]], game="other"))[0]
    # One context for the whole trajectory: the history (answers included) is part of the state.
    session = keys(trajectory([[1], [2]], [[5], [6]], fresh=False))
    assert session[1] != keys(trajectory([[1], [2]], [[7], [6]], fresh=False))[1]
    assert session[0] == keys(trajectory([[1], [3]], [[5], [6]], fresh=False))[0]
    assert session[1] != keys(trajectory([[2]]))[0]
    # Splitting ids differently between prompt and answer is a different context.
    assert (
        keys(trajectory([[1], [2]], [[5, 6], [0]], fresh=False))[1]
        != keys(trajectory([[1], [2]], [[5], [6, 0]], fresh=False))[1]
    )


def test_values_are_running_means_shrunk_towards_the_turn_number_mean() -> None:
    table = ValueTable(rate=0.25, prior=2.0)
    a, b = trajectory([[1], [2]]), trajectory([[3]])
    assert table.values([a, b]) == ([[0.0, 0.0], [0.0]], 0.0)  # nothing seen: 0
    table.update([a, b], [[1.0, 0.5], [-1.0]])
    # Coarse (g, player_0, turn 0): mean of 1 and -1 = 0; turn 1: 0.5. Context [1]: 1 (one visit).
    values, seen = table.values([a, trajectory([[4]]), trajectory([[9], [2]])])
    assert seen == pytest.approx(3 / 5)
    assert values[0] == pytest.approx([(1 * 1.0 + 2 * 0.0) / 3, (1 * 0.5 + 2 * 0.5) / 3])
    assert values[1] == [0.0]  # unseen context: the coarse mean of its turn number
    assert values[2] == pytest.approx([0.0, 0.5])  # [2] after [9] is its own fresh context: seen
    # Running mean for the first 1/rate visits, then a moving average with step `rate`.
    for target in (2.0, 3.0, 4.0, 0.0):
        table.update([trajectory([[1]])], [[target]])
    visits, mean = table.states[ValueTable.state_keys(trajectory([[1]]))[0]]
    expected = (1.0 + 2.0 + 3.0 + 4.0) / 4
    expected += 0.25 * (0.0 - expected)
    assert visits == 5 and mean == pytest.approx(expected)


def test_roles_have_their_own_coarse_means() -> None:
    table = ValueTable(prior=1.0)
    table.update([trajectory([[1]], role="player_0"), trajectory([[2]], role="player_1")], [[1.0], [-1.0]])
    values, _ = table.values([trajectory([[5]], role="player_0"), trajectory([[5]], role="player_1")])
    assert values == [[1.0], [-1.0]]


def test_least_recently_updated_contexts_are_dropped_past_the_cap() -> None:
    table = ValueTable(max_entries=2)
    for prompt in ([1], [2], [1], [3]):
        table.update([trajectory([prompt])], [[1.0]])
    kept = set(table.states)
    key = ValueTable.state_keys
    assert kept == {key(trajectory([[1]]))[0], key(trajectory([[3]]))[0]}


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.integers(0, 3), min_size=1, max_size=3), st.floats(-2, 2)),
        min_size=1,
        max_size=20,
    )
)
def test_state_round_trips_through_a_checkpoint(updates: list[tuple[list[int], float]]) -> None:
    table = ValueTable(rate=0.1, prior=3.0)
    for prompt, target in updates:
        table.update([trajectory([prompt, [7]])], [[target, target / 2]])
    again = ValueTable(rate=0.1, prior=3.0)
    again.load(pickle.loads(pickle.dumps(table.state())))
    probe = [trajectory([prompt, [7]]) for prompt, _ in updates] + [trajectory([[8, 8]])]
    assert again.values(probe) == table.values(probe)
    # Every value lies within the range of the targets seen (it is a weighted mean of them, or 0).
    targets = [t for _, t in updates] + [t / 2 for _, t in updates]
    low, high = min([*targets, 0.0]), max([*targets, 0.0])
    assert all(low - 1e-9 <= v <= high + 1e-9 for row in table.values(probe)[0] for v in row)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate must be in"):
        ValueTable(rate=0.0)
    with pytest.raises(ValueError, match="prior must be >= 0"):
        ValueTable(prior=-1.0)
