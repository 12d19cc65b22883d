"""The registry of scorecard kinds: how each kind of env is shown in tables, plots and rankings.

An env declares its scorecard where its family registers it (`palaestra.core.scorecards`); the
kind named there picks a `ScorecardKind` from `KINDS`, which decides the columns of the per-seat
table (`palaestra run`, `palaestra report`, the arena), the one headline number plots and rankings
show, and any extra section (the cooperative kind's team table). Built in:

- `competitive`: win/draw/loss and non-loss %, mean return and, where the game's range is known,
  the normalized return (0-100). Headline: the non-loss rate (against a solver, the most a
  perfect player can be sure of).
- `cooperative`: the team score (every seat shares it), out of the game's maximum. Headline: the
  team score.
- `service`: the scored seats only (the agent, not the simulated customer): success % with its
  95% Wilson interval and the mean reward; pass^k and avg@k come from `palaestra.eval.service_metrics`.
- `social`: each seat's gain; the society metrics come from `palaestra.eval.society`.
- `score`: each seat's mean return (single-player and general-sum games, envs nobody declared).

A later family adds its kind with `register_kind(MyKind())`, `MyKind.name` being the name its
scorecards declare; a kind nobody registered here is shown as `score`.
"""

from __future__ import annotations

import importlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from palaestra.core.records import Episode
from palaestra.core.registries import Registry
from palaestra.core.registry import scorecard_for
from palaestra.core.scorecards import COMPETITIVE, COOPERATIVE, SCORE, SERVICE, SOCIAL, Scorecard
from palaestra.eval.ratings import wilson_interval
from palaestra.eval.summaries import SummarySection

Z_95 = 1.96


@dataclass(frozen=True)
class SeatScore:
    """One agent in one seat (or over several), counted the same way by every table.

    `episodes` counts the finished episodes that were scored; `errors` those that did not finish.
    `mean_return` is None when nothing was scored; `half_width` is its 95% interval's half-width.
    `normalized` is the mean return on the game's 0-100 scale, when its range is known.
    """

    player: str
    agent: str
    episodes: int
    wins: int = 0
    draws: int = 0
    losses: int = 0
    successes: int = 0
    mean_return: float | None = None
    half_width: float = 0.0
    errors: int = 0
    normalized: float | None = None

    @classmethod
    def from_moments(
        cls,
        player: str,
        agent: str,
        episodes: int,
        mean: float | None,
        mean_square: float | None,
        **counts: Any,
    ) -> SeatScore:
        """From the mean and mean square of the returns (as the store's seat table gives them)."""
        half = 0.0
        if episodes > 1 and mean is not None and mean_square is not None:
            variance = max(mean_square - mean * mean, 0.0) * episodes / (episodes - 1)
            half = Z_95 * math.sqrt(variance / episodes)
        return cls(player, agent, episodes, mean_return=mean, half_width=half, **counts)

    @classmethod
    def from_stats(cls, player: str, agent: str, stats: Any) -> SeatScore:
        """From a `palaestra.rollout.sink.SeatStats` (a run's streaming summary)."""
        return cls(
            player,
            agent,
            stats.episodes,
            wins=stats.wins,
            draws=stats.draws,
            losses=stats.losses,
            successes=getattr(stats, "successes", 0),
            mean_return=stats.mean_return if stats.episodes else None,
            half_width=Z_95 * stats.stderr,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SeatScore:
        """From one row of `Store.seat_table`."""
        scored = int(row.get("wins") or 0) + int(row.get("draws") or 0) + int(row.get("losses") or 0)
        return cls.from_moments(
            str(row["player"]),
            str(row["agent"]),
            scored,
            row.get("mean_return"),
            row.get("mean_square_return"),
            wins=int(row.get("wins") or 0),
            draws=int(row.get("draws") or 0),
            losses=int(row.get("losses") or 0),
            successes=int(row.get("successes") or 0),
            errors=int(row.get("errors") or 0),
        )

    def rate(self, count: int) -> float | None:
        return count / self.episodes if self.episodes else None


def pct(rate: float | None, digits: int = 1) -> str:
    return "-" if rate is None else f"{100 * rate:.{digits}f}"


def rate_with_interval(count: int, n: int) -> str:
    """`62.5 (40.9-80.0)`: a percentage and its 95% Wilson interval."""
    if not n:
        return "-"
    low, high = wilson_interval(count, n)
    return f"{100 * count / n:.1f} ({100 * low:.1f}-{100 * high:.1f})"


def mean_with_interval(score: SeatScore, digits: int = 3, sign: bool = True) -> str:
    if score.mean_return is None:
        return "-"
    value = f"{score.mean_return:+.{digits}f}" if sign else f"{score.mean_return:.{digits}f}"
    return f"{value} ± {score.half_width:.{digits}f}"


class ScorecardKind:
    """How one kind of scorecard is shown. Subclass it, set `name`, and `register_kind` it.

    The base class is the `score` kind: each seat's mean return, no win/draw/loss. Whether a kind's
    envs are contests is the declaration's (`Scorecard.outcomes`), so that the layers below eval
    (the store, the viewer) read it too.
    """

    name = SCORE
    description = "mean return per seat"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        """The kind's columns of the per-seat table (after seat, agent and episodes)."""
        columns = ["mean return (95% CI)"]
        if any(s.normalized is not None for s in scores):
            columns.append("norm. return")
        return columns

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        cells = [mean_with_interval(score)]
        if any(s.normalized is not None for s in scores):
            cells.append("-" if score.normalized is None else f"{score.normalized:.1f}")
        return cells

    def shown(self, card: Scorecard, score: SeatScore) -> bool:
        """Whether the seat has a row (service tables leave the simulated customer out)."""
        return card.scores_seat(score.player)

    def note(self, card: Scorecard) -> str:
        return "mean return ± 1.96 standard errors over finished episodes"

    def headline_label(self, card: Scorecard) -> str:
        return card.headline_label

    def headline_value(self, card: Scorecard, score: SeatScore) -> float | None:
        """The headline as a number: a rate in [0, 1] or a mean return (`card.headline_is_rate`)."""
        return card.headline_value(
            episodes=score.episodes,
            wins=score.wins,
            draws=score.draws,
            successes=score.successes,
            mean_return=score.mean_return,
        )

    def sections(self, card: Scorecard, env_id: str, episodes: Sequence[Episode]) -> list[SummarySection]:
        """Extra sections for a run of this kind (beside the family's summary providers)."""
        return []


class CompetitiveKind(ScorecardKind):
    """Zero-sum contests: win/draw/loss, non-loss, mean and normalized return."""

    name = COMPETITIVE
    description = "win/draw/loss, non-loss, normalized return; draws and non-losses against the solver"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["win %", "draw %", "loss %", "non-loss %", *super().seat_columns(card, scores)]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        counted = [
            pct(score.rate(n)) for n in (score.wins, score.draws, score.losses, score.wins + score.draws)
        ]
        return [*counted, *super().seat_cells(card, score, scores)]

    def note(self, card: Scorecard) -> str:
        solver = f"; against {card.solver} (the solver) the mark is non-loss" if card.solver else ""
        return f"win/draw/loss over finished episodes; non-loss = win or draw{solver}"


class CooperativeKind(ScorecardKind):
    """Games the seats play together: the team score, out of the game's maximum."""

    name = COOPERATIVE
    description = "team score (mean return), out of the maximum possible"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["team score (95% CI)", "% of max"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [mean_with_interval(score, 2, sign=False), _of_max(score.mean_return, card.max_score)]

    def note(self, card: Scorecard) -> str:
        best = f" out of {card.max_score:g}" if card.max_score is not None else ""
        return f"every seat shares the team score{best}; ± 1.96 standard errors"

    def sections(self, card: Scorecard, env_id: str, episodes: Sequence[Episode]) -> list[SummarySection]:
        return [team_section(card, episodes)]


def _of_max(value: float | None, best: float | None) -> str:
    if value is None or not best:
        return "-"
    return f"{100 * value / best:.1f}"


def team_section(card: Scorecard, episodes: Iterable[Episode]) -> SummarySection:
    """Per team (the agents in seat order): the team score (the seats' mean return) per episode."""
    scores: dict[str, list[float]] = defaultdict(list)
    failed = 0
    for episode in episodes:
        if episode.status != "ok" or not episode.returns:
            failed += episode.status != "ok"
            continue
        team = " + ".join(episode.agents.values())
        scores[team].append(sum(episode.returns.values()) / len(episode.returns))
    rows = []
    for team, values in sorted(scores.items()):
        n = len(values)
        mean = sum(values) / n
        score = SeatScore.from_moments("", team, n, mean, sum(v * v for v in values) / n)
        perfect = sum(1 for v in values if card.max_score is not None and v >= card.max_score - 1e-9)
        rows.append(
            [
                team,
                str(n),
                mean_with_interval(score, 2, sign=False),
                _of_max(mean, card.max_score),
                f"{max(values):g}",
                rate_with_interval(perfect, n) if card.max_score is not None else "-",
            ]
        )
    best = f"{card.max_score:g}" if card.max_score is not None else "unknown"
    note = f"team score: the seats' mean return per episode (all equal in this game); max possible: {best}"
    if failed:
        note += f"; {failed} unfinished episode(s) left out"
    return SummarySection(
        title="team score",
        columns=["team", "episodes", "team score (95% CI)", "% of max", "best", "perfect games % (CI)"],
        rows=rows,
        note=note,
    )


class ServiceKind(ScorecardKind):
    """Tasks for a simulated user: success and mean reward of the scored seats."""

    name = SERVICE
    description = "success, pass^k, avg@k of the agent seat"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["success % (95% CI)", "mean reward (95% CI)"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [rate_with_interval(score.successes, score.episodes), mean_with_interval(score, sign=False)]

    def note(self, card: Scorecard) -> str:
        seats = ", ".join(card.scored_seats) or "every seat"
        return (
            f"scored seat(s): {seats}; the others are simulated users; success = full reward; "
            "CI: 95% Wilson (success), ± 1.96 standard errors (reward)"
        )


class SocialKind(ScorecardKind):
    """Societies and dilemmas: each seat's gain (the society metrics come from `eval.society`)."""

    name = SOCIAL
    description = "society metrics: survival, efficiency, equality, over-usage; gain per seat"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["gain (95% CI)"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [mean_with_interval(score, 2, sign=False)]

    def note(self, card: Scorecard) -> str:
        return "gain: the seat's return (mean ± 1.96 standard errors); a society is judged by its metrics"

    def headline_label(self, card: Scorecard) -> str:
        return "gain"


KINDS: Registry[ScorecardKind] = Registry("scorecard kind")
"""Scorecard kinds by the name env specs declare (`Scorecard.kind`)."""


def register_kind(kind: ScorecardKind, *, override: bool = False) -> None:
    """Show scorecards that declare `kind.name` with `kind`."""
    KINDS.register(kind.name, kind, description=kind.description, override=override)


for _kind in (ScorecardKind(), CompetitiveKind(), CooperativeKind(), ServiceKind(), SocialKind()):
    register_kind(_kind)


FAMILY_KIND_MODULES = (
    "palaestra.eval.teams",
    "palaestra.eval.safety",
    "palaestra.eval.workspace",
    "palaestra.eval.web",
    "palaestra.eval.procgen",
)
"""Modules of later families that `register_kind` their own kinds when imported; imported the first
time a scorecard names a kind not yet registered (a module missing from this build is skipped)."""
_family_kinds_loaded = False


def _load_family_kinds() -> None:
    global _family_kinds_loaded
    if _family_kinds_loaded:
        return
    _family_kinds_loaded = True
    for module in FAMILY_KIND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def kind_of(card: Scorecard) -> ScorecardKind:
    """The renderer of `card`'s kind (`score`'s for a kind nobody registered)."""
    if card.kind not in KINDS:
        _load_family_kinds()
    return KINDS.get(card.kind) if card.kind in KINDS else KINDS.get(SCORE)


def seat_section(
    env_id: str, scores: Sequence[SeatScore], *, title: str = "", card: Scorecard | None = None
) -> SummarySection:
    """The per-seat table of `env_id` on its own scorecard: seat, agent, episodes, then the kind's
    columns; seats the scorecard does not score are left out."""
    card = card or scorecard_for(env_id)
    kind = kind_of(card)
    shown = [s for s in scores if kind.shown(card, s)]
    rows = [[s.player, s.agent, str(s.episodes), *kind.seat_cells(card, s, shown)] for s in shown]
    return SummarySection(
        title=title or f"{env_id}: {card.kind}",
        columns=["seat", "agent", "episodes", *kind.seat_columns(card, shown)],
        rows=rows,
        note=kind.note(card),
    )


def applies_to(env_id: str) -> bool:
    """Whether runs of `env_id` get extra scorecard sections (the run-summary provider's filter)."""
    card = scorecard_for(env_id)
    return type(kind_of(card)).sections is not ScorecardKind.sections


def summarize(episodes: Sequence[Episode]) -> list[SummarySection]:
    """The run-summary provider: each env's scorecard sections (the cooperative team table)."""
    by_env: dict[str, list[Episode]] = defaultdict(list)
    for episode in episodes:
        by_env[episode.env_id].append(episode)
    sections: list[SummarySection] = []
    for env_id, members in by_env.items():
        card = scorecard_for(env_id)
        sections.extend(kind_of(card).sections(card, env_id, members))
    return sections


__all__ = [
    "KINDS",
    "CompetitiveKind",
    "CooperativeKind",
    "ScorecardKind",
    "SeatScore",
    "ServiceKind",
    "SocialKind",
    "applies_to",
    "kind_of",
    "mean_with_interval",
    "pct",
    "rate_with_interval",
    "register_kind",
    "scorecard_for",
    "seat_section",
    "summarize",
    "team_section",
]
