"""Ratings and intervals for tournaments: OpenSkill (Weng-Lin Plackett-Luce), Elo, Wilson intervals.

A `Game` is one finished episode seen from the ratings' side: who sat in each seat and the final
return of each seat. Higher return ranks higher; equal returns tie. Games in which the same agent
sits in several seats are skipped by the ratings (they say nothing about relative skill).

- `openskill_ratings`: Bayesian skill (mu, sigma) per agent, updated game by game in the given
  order, with its history for plots. The leaderboard sorts by the conservative `mu - 3 sigma`.
- `elo_ratings`: classic Elo (K=16, start 1000) for comparison; multi-seat games count as every
  pair of seats. Elo depends on game order, so the final ratings are the mean over several seeded
  shuffles of the games; the history follows the given order.
- `wilson_interval`: the 95% Wilson score interval of a proportion.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Game:
    """One finished episode for the ratings: agents and returns in seat order."""

    env_id: str
    agents: tuple[str, ...]
    returns: tuple[float, ...]

    @property
    def rateable(self) -> bool:
        return len(self.agents) >= 2 and len(set(self.agents)) == len(self.agents)


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of `successes / trials` (95% by default); (0, 1) when trials is 0."""
    if trials <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be between 0 and trials ({trials}), got {successes}")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def ranks(returns: Sequence[float]) -> list[int]:
    """Competition ranks (1 is best) from returns; equal returns share a rank."""
    return [1 + sum(other > value for other in returns) for value in returns]


@dataclass(frozen=True)
class SkillRating:
    """An agent's OpenSkill rating: mean skill, its uncertainty, and games it was rated on."""

    mu: float
    sigma: float
    games: int

    @property
    def ordinal(self) -> float:
        """The conservative skill estimate `mu - 3 sigma` that leaderboards sort by."""
        return self.mu - 3.0 * self.sigma


@dataclass
class RatingHistory:
    """Ratings after each rated game: `points[agent]` is a list of (games so far, value)."""

    points: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    bands: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def add(self, index: int, agent: str, value: float, band: float = 0.0) -> None:
        self.points.setdefault(agent, []).append((index, value))
        self.bands.setdefault(agent, []).append((index, band))


def openskill_ratings(
    games: Sequence[Game], *, agents: Sequence[str] = (), max_history: int = 400
) -> tuple[dict[str, SkillRating], RatingHistory]:
    """OpenSkill Plackett-Luce ratings after playing `games` in order, and their history.

    `agents` are rated even without games (they keep the prior). The history keeps about
    `max_history` points per agent (every game when there are fewer).
    """
    from openskill.models import PlackettLuce

    model = PlackettLuce()
    current = {agent: model.rating(name=agent) for agent in agents}
    counts = dict.fromkeys(agents, 0)
    rated = [game for game in games if game.rateable]
    stride = max(1, len(rated) // max_history)
    history = RatingHistory()
    for agent, rating in current.items():
        history.add(0, agent, rating.mu, rating.sigma)
    for index, game in enumerate(rated, start=1):
        for agent in game.agents:
            if agent not in current:
                current[agent] = model.rating(name=agent)
                counts[agent] = 0
                history.add(0, agent, current[agent].mu, current[agent].sigma)
        teams = [[current[agent]] for agent in game.agents]
        updated = model.rate(teams, ranks=[float(r) for r in ranks(game.returns)])
        for agent, team in zip(game.agents, updated, strict=True):
            current[agent] = team[0]
            counts[agent] += 1
        if index % stride == 0 or index == len(rated):
            for agent in game.agents:
                history.add(index, agent, current[agent].mu, current[agent].sigma)
    ratings = {
        agent: SkillRating(mu=float(r.mu), sigma=float(r.sigma), games=counts[agent])
        for agent, r in current.items()
    }
    return ratings, history


def _elo_pass(
    games: Sequence[Game], initial: float, k: float, history: RatingHistory | None, stride: int
) -> dict[str, float]:
    ratings: dict[str, float] = {}
    for index, game in enumerate(games, start=1):
        for agent in game.agents:
            ratings.setdefault(agent, initial)
        deltas = dict.fromkeys(game.agents, 0.0)
        # Every pair of seats is one Elo game; the step is shared so a game moves a rating by <= k.
        step = k / (len(game.agents) - 1)
        for (a, ra), (b, rb) in combinations(zip(game.agents, game.returns, strict=True), 2):
            expected_a = 1.0 / (1.0 + 10 ** ((ratings[b] - ratings[a]) / 400.0))
            score_a = 1.0 if ra > rb else 0.5 if ra == rb else 0.0
            deltas[a] += step * (score_a - expected_a)
            deltas[b] -= step * (score_a - expected_a)
        for agent, delta in deltas.items():
            ratings[agent] += delta
        if history is not None and (index % stride == 0 or index == len(games)):
            for agent in game.agents:
                history.add(index, agent, ratings[agent])
    return ratings


def elo_ratings(
    games: Sequence[Game],
    *,
    agents: Sequence[str] = (),
    k: float = 16.0,
    initial: float = 1000.0,
    shuffles: int = 16,
    seed: int = 0,
    max_history: int = 400,
) -> tuple[dict[str, float], RatingHistory]:
    """Elo ratings (mean over `shuffles` seeded game orders) and the history in the given order."""
    rated = [game for game in games if game.rateable]
    history = RatingHistory()
    for agent in agents:
        history.add(0, agent, initial)
    stride = max(1, len(rated) // max_history)
    chronological = _elo_pass(rated, initial, k, history, stride)
    totals = {agent: 0.0 for agent in [*agents, *chronological]}
    rng = random.Random(seed)
    passes = max(1, shuffles)
    for _ in range(passes):
        order = list(rated)
        rng.shuffle(order)
        for agent, value in _elo_pass(order, initial, k, None, 1).items():
            totals[agent] += value
    ratings = {
        agent: (total / passes if agent in chronological else initial) for agent, total in totals.items()
    }
    return ratings, history


__all__ = [
    "Z_95",
    "Game",
    "RatingHistory",
    "SkillRating",
    "elo_ratings",
    "openskill_ratings",
    "ranks",
    "wilson_interval",
]
