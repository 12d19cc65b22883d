"""Society metrics over runs: Kaplan-Meier survival, Wilson intervals, the summary sections of every
social env, and `palaestra run` printing them."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from palaestra.core import Episode
from palaestra.eval.society import (
    applies_to,
    kaplan_meier,
    mean_interval,
    median_survival,
    summarize,
    wilson_interval,
)
from palaestra.eval.summaries import providers_for, summarize_run
from palaestra.rollout.runner import RunConfig, iter_episodes, run_sync

DEMO_AGENTS = ["sustainable", "greedy", "sustainable", "sustainable", "sustainable"]


def run_episodes_of(
    env_id: str, agents: list[str], tmp_path: Path, episodes: int = 4, **options: object
) -> list[Episode]:
    out = tmp_path / env_id
    summary = run_sync(
        RunConfig(env_id=env_id, env_options=dict(options), agents=agents, episodes=episodes), out
    )
    assert summary.statuses == {"ok": episodes}
    return list(iter_episodes(out / "episodes.jsonl"))


# ----- statistics ------------------------------------------------------------------------------------
def test_kaplan_meier_matches_a_hand_computed_table_with_censoring() -> None:
    times = [1, 2, 2, 3, 4, 4]
    events = [True, True, False, True, False, False]
    rows = kaplan_meier(times, events, horizon=5)
    assert [(r.time, r.at_risk, r.events, r.censored) for r in rows] == [
        (1, 6, 1, 0),
        (2, 5, 1, 1),
        (3, 3, 1, 0),
        (4, 2, 0, 2),
        (5, 0, 0, 0),
    ]
    expected = [5 / 6, 5 / 6 * 4 / 5, 5 / 6 * 4 / 5 * 2 / 3, 5 / 6 * 4 / 5 * 2 / 3, 5 / 6 * 4 / 5 * 2 / 3]
    assert [r.survival for r in rows] == pytest.approx(expected)
    # Greenwood on the log(-log S) scale at t = 3.
    s = expected[2]
    variance = 1 / (6 * 5) + 1 / (5 * 4) + 1 / (3 * 2)
    spread = 1.959964 * math.sqrt(variance) / abs(math.log(s))
    assert (rows[2].low, rows[2].high) == pytest.approx((s ** math.exp(spread), s ** math.exp(-spread)))
    assert median_survival(rows) == 3


@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=40))
def test_without_censoring_kaplan_meier_is_the_share_still_alive(times: list[int]) -> None:
    rows = kaplan_meier(times, [True] * len(times), horizon=12)
    for row in rows:
        assert row.survival == pytest.approx(sum(1 for t in times if t > row.time) / len(times))
        assert 0.0 <= row.low <= row.survival <= row.high <= 1.0
    assert all(a.survival >= b.survival for a, b in itertools.pairwise(rows))


@given(st.lists(st.tuples(st.integers(min_value=1, max_value=12), st.booleans()), min_size=1, max_size=40))
def test_kaplan_meier_is_a_non_increasing_curve_within_its_interval(runs: list[tuple[int, bool]]) -> None:
    rows = kaplan_meier([t for t, _ in runs], [e for _, e in runs], horizon=12)
    assert sum(r.events + r.censored for r in rows) == len(runs)
    for previous, row in itertools.pairwise(rows):
        assert row.survival <= previous.survival + 1e-12 and row.at_risk <= previous.at_risk
    for row in rows:
        assert 0.0 <= row.low <= row.survival + 1e-12 and row.survival <= row.high + 1e-12 <= 1.0 + 1e-12


def test_kaplan_meier_rejects_mismatched_inputs_and_handles_none() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        kaplan_meier([1, 2], [True])
    assert kaplan_meier([], []) == []


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 50) == pytest.approx((0.0, 0.07135), abs=1e-4)
    assert wilson_interval(10, 20) == pytest.approx((0.2993, 0.7007), abs=1e-4)
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)
    assert mean_interval([2.0, 4.0]) == pytest.approx((3.0, 1.959964 * math.sqrt(2.0 / 2)))


# ----- providers -------------------------------------------------------------------------------------
def test_the_society_provider_applies_to_social_envs_only() -> None:
    assert applies_to("commons-v0") and applies_to("market-v0?rounds=3") and applies_to("negotiation-v0")
    assert not applies_to("tic_tac_toe-v0") and not applies_to("openspiel:kuhn_poker")
    assert summarize in providers_for("commons-v0")
    assert summarize not in providers_for("tic_tac_toe-v0")


def test_commons_sections_hold_the_society_metrics_and_kaplan_meier_curve(tmp_path: Path) -> None:
    episodes = run_episodes_of("commons-v0", DEMO_AGENTS, tmp_path, episodes=6)
    sections = summarize_run("commons-v0", episodes)
    titles = [s.title for s in sections]
    assert titles[0].startswith("society metrics: commons (greedy x1, sustainable x4; 6 runs of 12 rounds)")
    assert "society metrics by agent (commons)" in titles
    metrics = {row[0]: row for row in sections[0].rows}
    assert set(metrics) == {
        "survival rate",
        "survival time (rounds)",
        "total gain",
        "gain per agent",
        "efficiency",
        "equality (1 - Gini)",
        "over-usage",
    }
    societies = [e.info["society"] for e in episodes]
    mean_time = sum(s["survival_time"] for s in societies) / len(societies)
    assert float(metrics["survival time (rounds)"][1]) == pytest.approx(mean_time, abs=0.005)
    assert metrics["over-usage"][1] == "0.200"  # one of five agents always over-asks
    survival = next(s for s in sections if s.title.startswith("Kaplan-Meier"))
    collapse_rounds = [s["collapse_round"] for s in societies]
    assert len(survival.rows) == max(collapse_rounds)  # every run collapsed: no rows after the last
    ((label, curve),) = survival.curves.items()
    assert label == "greedy x1, sustainable x4"
    assert curve[0] == (0.0, 1.0) and len(curve) == max(collapse_rounds) + 1
    assert curve[-1][1] == 0.0
    for time, share in curve[1:]:
        assert share == pytest.approx(sum(1 for r in collapse_rounds if r > time) / len(collapse_rounds))
    by_agent = {row[0]: row for row in next(s for s in sections if "by agent" in s.title).rows}
    assert by_agent["greedy"][3] == "1.000" and by_agent["sustainable"][3] == "0.000"


def test_sustainable_society_survives_every_run(tmp_path: Path) -> None:
    episodes = run_episodes_of("commons-v0", ["sustainable"] * 5, tmp_path, episodes=3)
    sections = summarize(episodes)
    metrics = {row[0]: row for row in sections[0].rows}
    assert metrics["survival rate"][1] == "1.000"
    assert metrics["equality (1 - Gini)"][1] == "1.000" and metrics["efficiency"][1] == "1.000"
    survival = sections[2]
    assert all(row[4] == "1.000" for row in survival.rows)
    assert survival.rows[-1][3] == "3"  # every run censored at the last round
    assert "not reached" in survival.note


def test_unfinished_episodes_are_left_out_and_counted(tmp_path: Path) -> None:
    episodes = run_episodes_of("commons-v0", ["sustainable"] * 5, tmp_path, episodes=2)
    broken = Episode(id="x", env_id="commons-v0", agents=episodes[0].agents, status="error", cause="boom")
    sections = summarize([*episodes, broken])
    assert "1 unfinished episode(s) left out" in sections[0].note
    assert sections[0].rows[0][3] == "2"
    only_broken = summarize([broken])
    assert only_broken and "1 unfinished" in only_broken[0].note
    assert summarize([]) == []


@pytest.mark.parametrize(
    ("env_id", "agents", "first_metric", "curve"),
    [
        ("prisoners_dilemma-v0", ["tit_for_tat", "greedy"], "cooperation rate", "cooperation rate"),
        (
            "public_goods-v0",
            ["sustainable", "greedy", "tit_for_tat", "conformist"],
            "contribution rate",
            "contribution rate",
        ),
        ("ultimatum-v0", ["sustainable", "greedy"], "offer share", None),
        ("negotiation-v0", ["sustainable", "greedy"], "deal rate", None),
        ("market-v0", ["sustainable", "tit_for_tat", "greedy"], "market price", "market price"),
        ("conformity_vote-v0", ["confederate"] * 3 + ["conformist", "sustainable"], "conformity rate", None),
    ],
)
def test_every_social_game_has_its_summary(
    env_id: str, agents: list[str], first_metric: str, curve: str | None, tmp_path: Path
) -> None:
    episodes = run_episodes_of(env_id, agents, tmp_path, episodes=3)
    sections = summarize_run(env_id, episodes)
    assert len(sections) == 2
    assert sections[0].rows[0][0] == first_metric
    assert all(len(row) == len(section.columns) for section in sections for row in section.rows)
    assert {row[0] for row in sections[1].rows} == set(agents)
    if curve is not None:
        assert sections[0].curves[curve]


def test_conformity_summary_pools_votes(tmp_path: Path) -> None:
    episodes = run_episodes_of(
        "conformity_vote-v0", ["confederate"] * 3 + ["conformist", "sustainable"], tmp_path
    )
    rows = {row[0]: row for row in summarize(episodes)[0].rows}
    assert rows["conformity rate"][1] == "0.500" and rows["conformity rate"][3] == str(8 * len(episodes))
    agents = {row[0]: row for row in summarize(episodes)[1].rows}
    assert agents["conformist"][2] == "1.000" and agents["sustainable"][2] == "0.000"


# ----- the CLI -----------------------------------------------------------------------------------------
def test_palaestra_run_prints_the_society_tables(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from palaestra.cli.app import app

    result = CliRunner().invoke(
        app,
        [
            "run",
            "commons-v0",
            "--agents",
            ",".join(DEMO_AGENTS),
            "--episodes",
            "5",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "society metrics: commons" in result.output
    assert "Kaplan-Meier survival of the commons" in result.output
    assert "survival rate" in result.output and "over-usage" in result.output
