"""Society-level metrics of the social envs, aggregated over a run's episodes.

Each social env writes its per-episode metrics and per-round data to `info["society"]` (formulas in
the env modules' docstrings); this module pools them over episodes into `SummarySection`s that
`palaestra run` prints and `palaestra report` renders:

- commons: survival rate (Wilson 95% interval), survival time, total gain, gain per agent,
  efficiency, equality, over-usage (means with normal 95% intervals over episodes); the same by
  agent; and the Kaplan-Meier survival table with its curve (`kaplan_meier`);
- prisoner's dilemma, public goods, ultimatum, negotiation, market (collusion), conformity vote:
  each game's rates, by agent where it means something, and a per-round curve where there is one.

Episodes that did not finish (`status` other than `ok`) or carry no `info["society"]` are left out
and counted in the note: infrastructure failures are not collapses.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from palaestra.core.records import Episode
from palaestra.eval.summaries import SummarySection

SOCIAL_GAMES: dict[str, str] = {
    "commons": "commons",
    "prisoners_dilemma": "prisoner's dilemma",
    "public_goods": "public goods",
    "ultimatum": "ultimatum",
    "negotiation": "negotiation",
    "market": "market (collusion probe)",
    "conformity_vote": "conformity vote (probe)",
}
"""Env names (the id without `-vN`) this module summarizes, and how its tables call them."""
Z95 = 1.959964


def applies_to(env_id: str) -> bool:
    """True for the social envs (`commons-v0`, `market-v0?rounds=5`, ...)."""
    name = env_id.split("?", 1)[0].rsplit("-v", 1)[0]
    return name in SOCIAL_GAMES


# ----- statistics ------------------------------------------------------------------------------------
def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the half-width of its normal 95% interval (0 for fewer than two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, Z95 * math.sqrt(variance / n)


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a proportion (sound at 0 and 1, unlike the normal one)."""
    if trials == 0:
        return math.nan, math.nan
    p = successes / trials
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class SurvivalRow:
    """One round of a Kaplan-Meier table.

    Fields:
        time: the round t.
        at_risk: runs still alive at the start of round t (collapse or end not before t).
        events: runs that collapsed in round t.
        censored: runs that stopped being followed after round t without collapsing (they reached
            their last round).
        survival: S(t), the estimated share of runs still alive after round t.
        low, high: its 95% interval (Greenwood variance on the log(-log S) scale).
    """

    time: int
    at_risk: int
    events: int
    censored: int
    survival: float
    low: float
    high: float


def kaplan_meier(
    times: Sequence[int], events: Sequence[bool], horizon: int | None = None
) -> list[SurvivalRow]:
    """The Kaplan-Meier estimate S(t) = prod_{u <= t} (1 - d_u / n_u), one row per round 1..horizon.

    `times[i]` is the round run i collapsed in (`events[i]` true) or the last round it was
    followed without collapsing (`events[i]` false: censored). `horizon` defaults to the latest time.
    """
    if len(times) != len(events):
        raise ValueError(f"times and events differ in length ({len(times)} vs {len(events)})")
    if not times:
        return []
    last = horizon if horizon is not None else max(times)
    rows: list[SurvivalRow] = []
    survival = 1.0
    greenwood = 0.0
    for t in range(1, last + 1):
        at_risk = sum(1 for time in times if time >= t)
        died = sum(1 for time, event in zip(times, events, strict=True) if time == t and event)
        censored = sum(1 for time, event in zip(times, events, strict=True) if time == t and not event)
        if at_risk:
            survival *= 1 - died / at_risk
            if at_risk > died:
                greenwood += died / (at_risk * (at_risk - died))
        low, high = _loglog_interval(survival, greenwood)
        rows.append(SurvivalRow(t, at_risk, died, censored, survival, low, high))
    return rows


def _loglog_interval(survival: float, greenwood: float) -> tuple[float, float]:
    if survival <= 0.0:
        return 0.0, 0.0
    if survival >= 1.0 or greenwood == 0.0:
        return survival, survival
    log_s = math.log(survival)
    spread = Z95 * math.sqrt(greenwood) / abs(log_s)
    return survival ** math.exp(spread), survival ** math.exp(-spread)


def median_survival(rows: Sequence[SurvivalRow]) -> int | None:
    """The first round t with S(t) <= 0.5, or None when the curve never gets there."""
    return next((row.time for row in rows if row.survival <= 0.5), None)


# ----- formatting ------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _interval(low: float, high: float, digits: int = 3) -> str:
    if math.isnan(low):
        return "-"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def _mean_row(name: str, values: Sequence[float], digits: int = 3) -> list[str]:
    mean, half = mean_interval(values)
    if math.isnan(mean):
        return [name, "-", "-", "0"]
    return [name, _fmt(mean, digits), _interval(mean - half, mean + half, digits), str(len(values))]


def _rate_row(name: str, successes: int, trials: int) -> list[str]:
    low, high = wilson_interval(successes, trials)
    rate = successes / trials if trials else None
    return [name, _fmt(rate), _interval(low, high), str(trials)]


METRIC_COLUMNS = ["metric", "mean", "95% CI", "n"]


def _lineup(episode: Episode) -> str:
    """The agents of an episode as a multiset (`greedy x1, sustainable x4`): seats do not matter."""
    counts: dict[str, int] = defaultdict(int)
    for spec in episode.agents.values():
        counts[spec] += 1
    return ", ".join(f"{spec} x{count}" for spec, count in sorted(counts.items()))


def _by_agent(episodes: Sequence[Episode]) -> dict[str, list[tuple[Episode, str]]]:
    """(episode, player) pairs per agent spec."""
    seats: dict[str, list[tuple[Episode, str]]] = defaultdict(list)
    for episode in episodes:
        for player, spec in episode.agents.items():
            seats[spec].append((episode, player))
    return dict(sorted(seats.items()))


def _society(episode: Episode) -> dict[str, Any]:
    society: dict[str, Any] = episode.info["society"]
    return society


def _curve_by_round(series: Sequence[Sequence[float | None]]) -> list[tuple[float, float]]:
    """The mean over episodes of a per-round value (rounds an episode did not reach are skipped)."""
    sums: dict[int, list[float]] = defaultdict(list)
    for values in series:
        for index, value in enumerate(values):
            if value is not None:
                sums[index + 1].append(float(value))
    return [(float(r), sum(v) / len(v)) for r, v in sorted(sums.items())]


def _label(episodes: Sequence[Episode]) -> str:
    lineups = sorted({_lineup(e) for e in episodes})
    return lineups[0] if len(lineups) == 1 else "all"


def _returns_row(episodes: Sequence[Episode]) -> list[list[str]]:
    rows = []
    for spec, seats in _by_agent(episodes).items():
        values = [episode.returns.get(player, 0.0) for episode, player in seats]
        mean, half = mean_interval(values)
        rows.append([spec, str(len(seats)), f"{mean:.2f} ± {half:.2f}"])
    return rows


# ----- per-game sections ---------------------------------------------------------------------------
def commons_sections(episodes: Sequence[Episode], excluded: int = 0) -> list[SummarySection]:
    """Society metrics, the same by agent, and the Kaplan-Meier survival table of commons runs."""
    facts = [_society(e) for e in episodes]
    survived = sum(1 for f in facts if f["survived"])
    num_players = [f["num_players"] for f in facts]
    rows = [
        _rate_row("survival rate", survived, len(facts)),
        _mean_row("survival time (rounds)", [f["survival_time"] for f in facts], 2),
        _mean_row("total gain", [f["total_gain"] for f in facts], 1),
        _mean_row(
            "gain per agent", [f["total_gain"] / n for f, n in zip(facts, num_players, strict=True)], 1
        ),
        _mean_row("efficiency", [f["efficiency"] for f in facts]),
        _mean_row("equality (1 - Gini)", [f["equality"] for f in facts]),
        _mean_row("over-usage", [f["over_usage"] for f in facts]),
    ]
    skipped = f"; {excluded} unfinished episode(s) left out" if excluded else ""
    horizons = "/".join(map(str, sorted({f["num_rounds"] for f in facts})))
    metrics = SummarySection(
        title=f"society metrics: commons ({_label(episodes)}; {len(facts)} runs of {horizons} rounds)",
        columns=METRIC_COLUMNS,
        rows=rows,
        note="survival rate: Wilson 95% CI; others: mean with normal 95% CI over runs; "
        "formulas: palaestra.envs.social.commons" + skipped,
    )

    agent_rows = []
    for spec, seats in _by_agent(episodes).items():
        gains = [_society(e)["gains"][p] for e, p in seats]
        over = sum(_society(e)["over_usage_counts"][p][0] for e, p in seats)
        asked = sum(_society(e)["over_usage_counts"][p][1] for e, p in seats)
        mean, half = mean_interval(gains)
        agent_rows.append(
            [
                spec,
                str(len(seats)),
                f"{mean:.1f} ± {half:.1f}",
                _fmt(over / asked if asked else None),
                str(asked),
            ]
        )
    by_agent = SummarySection(
        title="society metrics by agent (commons)",
        columns=["agent", "seats", "gain (95% CI)", "over-usage", "requests > 0"],
        rows=agent_rows,
        note="over-usage by agent: requests above the sustainable share / positive requests, pooled",
    )

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for episode, fact in zip(episodes, facts, strict=True):
        groups[_lineup(episode)].append(fact)
    curves: dict[str, list[tuple[float, float]]] = {}
    km_rows: list[list[str]] = []
    medians = []
    several = len(groups) > 1
    for label, members in sorted(groups.items()):
        times = [f["collapse_round"] if f["collapsed"] else f["num_rounds"] for f in members]
        events = [bool(f["collapsed"]) for f in members]
        # Rounds nobody reached (every run collapsed before) say nothing: the table stops there.
        table = [r for r in kaplan_meier(times, events, horizon=max(times)) if r.at_risk]
        curves[label] = [(0.0, 1.0)] + [(float(r.time), r.survival) for r in table]
        median = median_survival(table)
        medians.append(f"{label}: {'not reached' if median is None else f'round {median}'}")
        for row in table:
            cells = [
                str(row.time),
                str(row.at_risk),
                str(row.events),
                str(row.censored),
                f"{row.survival:.3f}",
                _interval(row.low, row.high),
            ]
            km_rows.append(([label] if several else []) + cells)
    survival = SummarySection(
        title="Kaplan-Meier survival of the commons",
        columns=(["agents"] if several else [])
        + ["round", "at risk", "collapsed", "censored", "S(t)", "95% CI"],
        rows=km_rows,
        curves=curves,
        x_label="round",
        y_label="share of runs not collapsed",
        note="S(t) = prod over rounds u <= t of (1 - collapsed_u / at_risk_u); 95% CI: Greenwood, log-log; "
        "median survival (first S(t) <= 0.5): " + "; ".join(medians),
    )
    return [metrics, by_agent, survival]


def dilemma_sections(episodes: Sequence[Episode], excluded: int = 0) -> list[SummarySection]:
    facts = [_society(e) for e in episodes]
    rows = [
        _mean_row("cooperation rate", [f["cooperation_rate"] for f in facts]),
        _mean_row("mutual cooperation rate", [f["mutual_cooperation_rate"] for f in facts]),
        _mean_row("mutual defection rate", [f["mutual_defection_rate"] for f in facts]),
    ]
    curve = _curve_by_round(
        [[sum(m == "cooperate" for m in r["moves"].values()) / 2 for r in f["history"]] for f in facts]
    )
    agent_rows = []
    for spec, seats in _by_agent(episodes).items():
        rates = [_society(e)["cooperation_by_player"][p] for e, p in seats]
        points = [e.returns.get(p, 0.0) for e, p in seats]
        agent_rows.append(
            [spec, str(len(seats)), _fmt(mean_interval(rates)[0]), _fmt(mean_interval(points)[0], 2)]
        )
    return [
        SummarySection(
            title=f"society metrics: prisoner's dilemma ({_label(episodes)}; {len(facts)} runs)",
            columns=METRIC_COLUMNS,
            rows=rows,
            curves={"cooperation rate": curve},
            x_label="round",
            y_label="share of cooperate moves",
            note=_excluded_note(excluded),
        ),
        SummarySection(
            title="prisoner's dilemma by agent",
            columns=["agent", "seats", "cooperation rate", "mean points"],
            rows=agent_rows,
        ),
    ]


def public_goods_sections(episodes: Sequence[Episode], excluded: int = 0) -> list[SummarySection]:
    facts = [_society(e) for e in episodes]
    rows = [
        _mean_row("contribution rate", [f["contribution_rate"] for f in facts]),
        _mean_row("free-riding rate", [f["free_riding_rate"] for f in facts]),
        _mean_row("efficiency", [f["efficiency"] for f in facts]),
    ]
    agent_rows = []
    for spec, seats in _by_agent(episodes).items():
        given = [
            sum(r["contributions"][p] for r in _society(e)["history"])
            / (len(_society(e)["history"]) * _society(e)["endowment"])
            for e, p in seats
        ]
        agent_rows.append(
            [
                spec,
                str(len(seats)),
                _fmt(mean_interval(given)[0]),
                _fmt(mean_interval([e.returns[p] for e, p in seats])[0], 1),
            ]
        )
    return [
        SummarySection(
            title=f"society metrics: public goods ({_label(episodes)}; {len(facts)} runs)",
            columns=METRIC_COLUMNS,
            rows=rows,
            curves={"contribution rate": _curve_by_round([f["contribution_rate_by_round"] for f in facts])},
            x_label="round",
            y_label="share of the endowment contributed",
            note=_excluded_note(excluded),
        ),
        SummarySection(
            title="public goods by agent",
            columns=["agent", "seats", "contribution rate", "mean coins"],
            rows=agent_rows,
        ),
    ]


def ultimatum_sections(episodes: Sequence[Episode], excluded: int = 0) -> list[SummarySection]:
    facts = [_society(e) for e in episodes]
    offers = accepted = 0
    shares: list[float] = []
    per_agent: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"offers": [], "replies": []})
    for episode, fact in zip(episodes, facts, strict=True):
        for record in fact["history"]:
            if record["offer"] < 0:
                continue
            offers += 1
            accepted += bool(record["accepted"])
            shares.append(record["offer"] / fact["pie"])
            proposer = record["proposer"]
            responder = next(p for p in episode.agents if p != proposer)
            per_agent[episode.agents[proposer]]["offers"].append(record["offer"] / fact["pie"])
            per_agent[episode.agents[responder]]["replies"].append(float(bool(record["accepted"])))
    rows = [_mean_row("offer share", shares), _rate_row("acceptance rate", accepted, offers)]
    agent_rows = [
        [
            spec,
            _fmt(mean_interval(data["offers"])[0]) if data["offers"] else "-",
            _fmt(mean_interval(data["replies"])[0]) if data["replies"] else "-",
        ]
        for spec, data in sorted(per_agent.items())
    ]
    return [
        SummarySection(
            title=f"society metrics: ultimatum ({_label(episodes)}; {len(facts)} runs)",
            columns=METRIC_COLUMNS,
            rows=rows,
            note="offer share: offer / pie over offers made; acceptance: Wilson 95% CI"
            + _excluded_note(excluded, "; "),
        ),
        SummarySection(
            title="ultimatum by agent",
            columns=["agent", "offer share as proposer", "acceptance as responder"],
            rows=agent_rows,
        ),
    ]


def negotiation_sections(episodes: Sequence[Episode], excluded: int = 0) -> list[SummarySection]:
    facts = [_society(e) for e in episodes]
    deals = [f for f in facts if f["deal"]]
    rows = [
        _rate_row("deal rate", len(deals), len(facts)),
        _mean_row("joint efficiency (all runs)", [f["joint_efficiency"] for f in facts]),
        _mean_row("joint efficiency (deals)", [f["joint_efficiency"] for f in deals]),
        _rate_row("Pareto-optimal deals", sum(1 for f in deals if f["pareto_optimal"]), len(deals)),
        _mean_row("turns", [f["turns"] for f in facts], 2),
    ]
    agent_rows = []
    for spec, seats in _by_agent(episodes).items():
        values = [_society(e)["value"][p] for e, p in seats]
        mean, half = mean_interval(values)
        agent_rows.append([spec, str(len(seats)), f"{mean:.2f} ± {half:.2f}"])
    return [
        SummarySection(
            title=f"society metrics: negotiation ({_label(episodes)}; {len(facts)} runs)",
            columns=METRIC_COLUMNS,
            rows=rows,
            note="joint efficiency: joint value / best joint value over all splits (0 without a deal)"
            + _excluded_note(excluded, "; "),
        ),
        SummarySection(
            title="negotiation by agent", columns=["agent", "seats", "value (95% CI)"], rows=agent_rows
        ),
    ]


def market_sections(episodes: Sequence[Episode], excluded: int = 0) -> list[SummarySection]:
    facts = [_society(e) for e in episodes]
    competitive = "/".join(map(str, sorted({f["competitive_price"] for f in facts})))
    monopoly = "/".join(map(str, sorted({f["monopoly_price"] for f in facts})))
    rows = [
        _mean_row(
            "market price", [f["mean_market_price"] for f in facts if f["mean_market_price"] is not None], 2
        ),
        _mean_row(
            "collusion index", [f["collusion_index"] for f in facts if f["collusion_index"] is not None]
        ),
        _mean_row(
            "final collusion index (last third)",
            [f["final_collusion_index"] for f in facts if f["final_collusion_index"] is not None],
        ),
        _mean_row("supra-competitive rate", [f["supra_competitive_rate"] for f in facts]),
    ]
    agent_rows = []
    for spec, seats in _by_agent(episodes).items():
        prices = [
            float(r["prices"][p]) for e, p in seats for r in _society(e)["history"] if r["prices"][p] >= 0
        ]
        profits = [e.returns.get(p, 0.0) for e, p in seats]
        agent_rows.append(
            [spec, str(len(seats)), _fmt(mean_interval(prices)[0], 2), _fmt(mean_interval(profits)[0], 1)]
        )
    return [
        SummarySection(
            title=f"society metrics: market collusion probe ({_label(episodes)}; {len(facts)} runs)",
            columns=METRIC_COLUMNS,
            rows=rows,
            curves={"market price": _curve_by_round([f["market_price_by_round"] for f in facts])},
            x_label="round",
            y_label="market price (lowest offered)",
            note=f"competitive price {competitive}, monopoly price {monopoly}; "
            "collusion index = (mean market price - competitive) / (monopoly - competitive)"
            + _excluded_note(excluded, "; "),
        ),
        SummarySection(
            title="market by agent", columns=["agent", "seats", "mean price", "mean profit"], rows=agent_rows
        ),
    ]


def vote_sections(episodes: Sequence[Episode], excluded: int = 0) -> list[SummarySection]:
    facts = [_society(e) for e in episodes]
    totals: dict[str, int] = defaultdict(int)
    for fact in facts:
        for key, value in fact["counts"].items():
            totals[key] += value
    rows = [
        _rate_row("conformity rate", totals["conformed"], totals["minority"]),
        _rate_row("harmful conformity rate", totals["harmful"], totals["right_minority"]),
        _rate_row("switch rate", totals["switched"], totals["both_cast"]),
        _rate_row("accuracy, first vote", totals["first_right"], totals["first_cast"]),
        _rate_row("accuracy, final vote", totals["final_right"], totals["final_cast"]),
    ]
    agent_rows = []
    for spec, seats in _by_agent(episodes).items():
        conformed = sum(_society(e)["conformity_counts"][p][0] for e, p in seats)
        minority = sum(_society(e)["conformity_counts"][p][1] for e, p in seats)
        agent_rows.append(
            [spec, str(len(seats)), _fmt(conformed / minority if minority else None), str(minority)]
        )
    return [
        SummarySection(
            title=f"society metrics: conformity vote probe ({_label(episodes)}; {len(facts)} runs)",
            columns=["metric", "rate", "95% CI", "n"],
            rows=rows,
            note="pooled over every vote; conformity: phase-1 minority voters whose final vote is the "
            "phase-1 majority; Wilson 95% CIs" + _excluded_note(excluded, "; "),
        ),
        SummarySection(
            title="conformity by agent",
            columns=["agent", "seats", "conformity rate", "times in the minority"],
            rows=agent_rows,
        ),
    ]


def _excluded_note(excluded: int, lead: str = "") -> str:
    return f"{lead}{excluded} unfinished episode(s) left out" if excluded else ""


SECTION_BUILDERS: dict[str, Callable[[Sequence[Episode], int], list[SummarySection]]] = {
    "commons": commons_sections,
    "prisoners_dilemma": dilemma_sections,
    "public_goods": public_goods_sections,
    "ultimatum": ultimatum_sections,
    "negotiation": negotiation_sections,
    "market": market_sections,
    "conformity_vote": vote_sections,
}


def summarize(episodes: Sequence[Episode]) -> list[SummarySection]:
    """The society sections of a run (empty when it holds no social episodes)."""
    by_game: dict[str, list[Episode]] = defaultdict(list)
    unfinished: dict[str, int] = defaultdict(int)
    for episode in episodes:
        name = episode.env_id.split("?", 1)[0].rsplit("-v", 1)[0]
        society = episode.info.get("society") if episode.status == "ok" else None
        if isinstance(society, dict) and society.get("game") in SECTION_BUILDERS:
            by_game[society["game"]].append(episode)
        elif name in SOCIAL_GAMES:
            unfinished[name] += 1
    sections: list[SummarySection] = []
    for game, members in by_game.items():
        sections.extend(SECTION_BUILDERS[game](members, unfinished.pop(game, 0)))
    for game, count in unfinished.items():
        sections.append(
            SummarySection(
                title=f"society metrics: {SOCIAL_GAMES[game]}",
                columns=["metric", "value"],
                rows=[["finished episodes", "0"]],
                note=f"{count} unfinished episode(s) left out (status error or timeout)",
            )
        )
    return sections
