"""pass^k, avg@k and the service run summary (infrastructure errors left out and counted)."""

from __future__ import annotations

import itertools
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from palaestra.core.records import Episode
from palaestra.eval.service_metrics import applies_to, collect, pass_hat_k, pass_k_curve, summarize


def test_pass_hat_k_values() -> None:
    assert pass_hat_k(4, 4, 4) == 1.0
    assert pass_hat_k(3, 4, 1) == 0.75
    assert pass_hat_k(3, 4, 2) == pytest.approx(3 / 6)
    assert pass_hat_k(3, 4, 4) == 0.0
    assert pass_hat_k(0, 8, 1) == 0.0
    with pytest.raises(ValueError, match="k must be between 1"):
        pass_hat_k(1, 2, 3)
    with pytest.raises(ValueError, match="successes must be between 0"):
        pass_hat_k(5, 4, 1)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), trials=st.integers(1, 12))
def test_pass_hat_k_is_a_falling_probability(data: st.DataObject, trials: int) -> None:
    successes = data.draw(st.integers(0, trials))
    values = [pass_hat_k(successes, trials, k) for k in range(1, trials + 1)]
    assert values[0] == pytest.approx(successes / trials)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in itertools.pairwise(values))
    for k, value in enumerate(values, start=1):
        # The chance that k trials drawn without replacement all succeed.
        assert value == pytest.approx(comb(successes, k) / comb(trials, k))
        assert (value == 0.0) == (successes < k)


def episode(
    task: str, reward: float, *, subset: str = "s", domain: str = "retail", status: str = "ok"
) -> Episode:
    info = {}
    if status == "ok":
        info = {
            "domain": domain,
            "task_id": task,
            "subset": subset,
            "reward": reward,
            "termination": "user_stop",
            "reward_breakdown": {"db_match": reward == 1.0, "outputs_missing": [], "declined": None},
        }
    return Episode(
        id=f"{task}-{reward}",
        env_id=f"{domain}-v0",
        agents={"agent": "x", "user": "y"},
        status=status,  # type: ignore[arg-type]
        cause=None if status == "ok" else "model server down",
        info=info,
    )


def test_summary_leaves_out_infrastructure_errors_and_averages_tasks() -> None:
    episodes = [
        *(episode("a", r) for r in (1, 1, 1, 0)),  # pass^1 0.75, pass^2 0.5
        *(episode("b", r, subset="t") for r in (1, 0, 0, 0)),  # pass^1 0.25, pass^2 0
        episode("b", 0, status="error"),
        episode("a", 0, status="timeout"),
    ]
    run = collect(episodes)
    assert sum(run.infra_errors.values()) == 2
    assert sorted(r.trials for r in run.tasks.values()) == [4, 4]
    curve = pass_k_curve(list(run.tasks.values()), 4)
    assert [round(v, 4) for _, v, _ in curve] == [0.5, 0.25, 0.125, 0.0]
    domain, subsets, failures = summarize(episodes)
    assert domain.columns == ["domain", "tasks", "trials", "avg@4", "pass^1", "pass^2", "pass^3", "pass^4"]
    assert domain.rows == [["retail", "2", "4", "0.500", "0.500", "0.250", "0.125", "0.000"]]
    assert "2 episode(s) left out as infrastructure errors" in domain.note
    assert "retail-v0 error: 1" in domain.note and "retail-v0 timeout: 1" in domain.note
    assert domain.curves == {"retail": [(1.0, 0.5), (2.0, 0.25), (3.0, 0.125), (4.0, 0.0)]}
    assert [row[0] for row in subsets.rows] == ["retail/s", "retail/t"]
    assert subsets.rows[0][4:6] == ["0.750", "0.500"]
    counts = {row[0]: row[1] for row in failures.rows}
    assert counts["episodes"] == "8" and counts["passed"] == "4" and counts["wrong end state"] == "4"


def test_tasks_with_fewer_trials_only_count_where_they_can() -> None:
    episodes = [episode("a", 1), episode("a", 1), episode("b", 0)]
    (row,) = summarize(episodes)[0].rows
    assert row[2] == "1-2"  # trials per task
    assert row[4:] == ["0.500", "1.000"]  # pass^2 over task a only


def test_summary_is_empty_for_other_runs_and_applies_to_service_ids() -> None:
    assert summarize([]) == []
    assert applies_to("retail-v0") and applies_to("service:/tmp/x?task=1") and applies_to("crm-v0")
    assert not applies_to("tic_tac_toe-v0") and not applies_to("nonsense-v9")
