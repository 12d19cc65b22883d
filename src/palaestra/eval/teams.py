"""The team scorecard: how well a team of members solved checkable tasks, and how it got there.

Runs of the team worlds (`palaestra.envs.teams`, scorecard kind `team`) and of the one-seat
reasoning tasks (`palaestra.envs.reasoning`, kind `reasoning`) are scored here, from each
episode's `info["team"]` (or `info["reasoning"]`) and its turns. Per team (the env and the agents
in seat order), over the run's finished episodes:

- accuracy: the share of episodes whose final answer was right, with its 95% Wilson interval;
- solo baseline: the members' own first answers given before they saw any teammate (a debate's
  round 1, MALT's generator, the assistant's first answer: the single-agent baseline on exactly the
  same tasks), pooled, with their Wilson interval; and team − solo, the mean over episodes of
  (team right) − (share of that episode's solo answers that were right), ± 1.96 standard errors.
  Worlds where nobody answers alone (AgentFlow) show no baseline: run `reasoning:TASK` with the
  same `--seed`, `--episodes` and split, which deals the same tasks;
- consensus: per episode, the share of the members who stated an answer whose latest answer is
  the team's final one (mean over episodes), and the share of episodes where that is all of them;
- answer flips along each answer thread (a debater's own answers; a pipeline's answer as it is
  revised): right → wrong and wrong → right between consecutive answers, and all changes;
- problem drift: the share of replies with text that neither state an answer nor name any content
  word or number of the question (`TeamEnv._on_task`);
- monopolization: each seat's share of the team's turns and of its tokens (model tokens where a
  model played, words of the reply where a scripted member did);
- cost per episode: turns (refused ones included), tokens, tool calls, refused turns.

`team_stats(episodes)` gives the raw counts (tests compare them with hand counts); `summarize` is
the run-summary provider that `palaestra run` and `palaestra report` show.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from palaestra.core.records import Episode, Turn
from palaestra.core.registry import scorecard_for
from palaestra.core.scorecards import Scorecard
from palaestra.eval.scorecards import (
    ScorecardKind,
    SeatScore,
    mean_with_interval,
    rate_with_interval,
    register_kind,
)
from palaestra.eval.summaries import SummarySection

TEAM = "team"
REASONING = "reasoning"
ANSWER_KINDS = frozenset({"answer", "message", "pick"})
Z_95 = 1.96


def applies_to(env_id: str) -> bool:
    """Runs of team worlds and reasoning tasks."""
    return scorecard_for(env_id).kind in (TEAM, REASONING)


# ----- counting ---------------------------------------------------------------------------------
@dataclass
class TeamStats:
    """The raw counts of one team over a run (see the module docstring for what each means)."""

    env_id: str
    agents: dict[str, str]
    roles: dict[str, str] = field(default_factory=dict)
    episodes: int = 0
    correct: int = 0
    solo_answers: int = 0
    solo_correct: int = 0
    differences: list[float] = field(default_factory=list)
    consensus: list[float] = field(default_factory=list)
    unanimous: int = 0
    answers: int = 0
    changed: int = 0
    right_to_wrong: int = 0
    wrong_to_right: int = 0
    judged: int = 0
    drifted: int = 0
    turns: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    tool_calls: int = 0
    refused: int = 0
    unfinished: int = 0

    def share(self, counts: dict[str, int], seat: str) -> float | None:
        total = sum(counts.values())
        return counts.get(seat, 0) / total if total else None


def turn_tokens(turn: Turn) -> int:
    """A turn's tokens: the model's sampled ids where a model acted, else the words of the reply."""
    if turn.generation is not None and turn.generation.token_ids:
        return len(turn.generation.token_ids)
    action = turn.action
    text = action if isinstance(action, str) else (action.content or "")
    return len(text.split())


def _count_moves(stats: TeamStats, moves: Sequence[dict[str, Any]], final: str | None) -> None:
    threads: dict[str, dict[str, Any]] = {}
    latest: dict[str, str] = {}
    solo_seen: set[str] = set()
    solo_right = solo_total = 0
    for move in moves:
        stats.tool_calls += bool(move.get("tool"))
        if move.get("on_task") is not None:
            stats.judged += 1
            stats.drifted += move["on_task"] is False
        if move["kind"] not in ANSWER_KINDS or move.get("answer") is None:
            continue
        stats.answers += 1
        latest[move["seat"]] = move["answer"]
        if move.get("solo") and move["seat"] not in solo_seen:
            solo_seen.add(move["seat"])
            solo_total += 1
            solo_right += bool(move.get("correct"))
        thread = move.get("thread") or move["seat"]
        before = threads.get(thread)
        if before is not None:
            stats.changed += before["answer"] != move["answer"]
            stats.right_to_wrong += bool(before["correct"]) and not move.get("correct")
            stats.wrong_to_right += not before["correct"] and bool(move.get("correct"))
        threads[thread] = move
    stats.solo_answers += solo_total
    stats.solo_correct += solo_right
    if latest:
        agreeing = sum(1 for answer in latest.values() if answer == final)
        stats.consensus.append(agreeing / len(latest))
        stats.unanimous += agreeing == len(latest)


def team_stats(episodes: Sequence[Episode]) -> list[TeamStats]:
    """Per team (env id and the agents in seat order, in order of first appearance), the counts
    over the finished episodes that carry `info["team"]` (unfinished ones only counted)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], TeamStats] = {}
    for episode in episodes:
        key = (episode.env_id, tuple(episode.agents.items()))
        stats = found.setdefault(key, TeamStats(episode.env_id, dict(episode.agents)))
        record = episode.info.get("team") if episode.status == "ok" else None
        if not isinstance(record, dict):
            stats.unfinished += 1
            continue
        stats.roles = dict(record.get("seats") or {})
        stats.episodes += 1
        right = bool(record.get("correct"))
        stats.correct += right
        before = (stats.solo_answers, stats.solo_correct)
        _count_moves(stats, record.get("moves") or [], record.get("final"))
        solo = stats.solo_answers - before[0]
        if solo:
            stats.differences.append(float(right) - (stats.solo_correct - before[1]) / solo)
        for turn in episode.turns:
            stats.turns[turn.player] = stats.turns.get(turn.player, 0) + 1
            stats.tokens[turn.player] = stats.tokens.get(turn.player, 0) + turn_tokens(turn)
            stats.refused += turn.invalid is not None
    return list(found.values())


# ----- formatting ---------------------------------------------------------------------------------
def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The mean and the half-width of its normal 95% interval; None for no values."""
    if not values:
        return None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, Z_95 * math.sqrt(variance / len(values))


def _signed(values: Sequence[float]) -> str:
    found = mean_interval(values)
    return "-" if found is None else f"{100 * found[0]:+.1f} ± {100 * found[1]:.1f}"


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}" if total else "-"


def team_label(stats: TeamStats) -> str:
    return " + ".join(stats.agents.values())


def accuracy_section(all_stats: Sequence[TeamStats]) -> SummarySection:
    rows = []
    for stats in all_stats:
        consensus = mean_interval(stats.consensus)
        rows.append(
            [
                stats.env_id,
                team_label(stats),
                str(stats.episodes),
                rate_with_interval(stats.correct, stats.episodes),
                rate_with_interval(stats.solo_correct, stats.solo_answers),
                _signed(stats.differences),
                "-" if consensus is None else f"{consensus[0]:.2f}",
                _pct(stats.unanimous, len(stats.consensus)),
                _pct(stats.drifted, stats.judged),
            ]
        )
    unfinished = sum(s.unfinished for s in all_stats)
    note = (
        "accuracy: share of episodes whose final answer was right (95% Wilson CI); solo: members' first "
        "answers before seeing a teammate (the single-agent baseline on the same tasks); team − solo: mean "
        "per-episode difference ± 1.96 SE; consensus: share of answering members ending on the team's "
        "answer; drift: replies off the task"
    )
    if unfinished:
        note += f"; {unfinished} unfinished episode(s) left out"
    return SummarySection(
        title="team accuracy",
        columns=["env", "team", "episodes", "accuracy % (CI)", "solo % (CI)", "team − solo (pts)",
                 "consensus", "unanimous %", "drift %"],
        rows=rows,
        note=note,
    )  # fmt: skip


def flips_section(all_stats: Sequence[TeamStats]) -> SummarySection:
    rows = [
        [
            stats.env_id,
            team_label(stats),
            str(stats.answers),
            str(stats.changed),
            str(stats.right_to_wrong),
            str(stats.wrong_to_right),
            f"{(stats.wrong_to_right - stats.right_to_wrong) / stats.episodes:+.2f}"
            if stats.episodes
            else "-",
        ]
        for stats in all_stats
    ]
    return SummarySection(
        title="answer flips",
        columns=["env", "team", "answers", "changed", "right→wrong", "wrong→right", "net per episode"],
        rows=rows,
        note="between consecutive answers of one thread (a debater's own; a pipeline's answer as revised)",
    )


def monopolization_section(all_stats: Sequence[TeamStats]) -> SummarySection:
    rows = []
    for stats in all_stats:
        for seat, agent in stats.agents.items():
            turns, tokens = stats.share(stats.turns, seat), stats.share(stats.tokens, seat)
            rows.append(
                [
                    stats.env_id,
                    seat,
                    stats.roles.get(seat, ""),
                    agent,
                    "-" if turns is None else f"{100 * turns:.1f}",
                    "-" if tokens is None else f"{100 * tokens:.1f}",
                ]
            )
    return SummarySection(
        title="monopolization",
        columns=["env", "seat", "role", "agent", "turns %", "tokens %"],
        rows=rows,
        note="each seat's share of the team's turns and tokens over the run (tokens: model tokens, or the "
        "words of a scripted member's replies)",
    )


def cost_section(all_stats: Sequence[TeamStats]) -> SummarySection:
    rows = []
    for stats in all_stats:
        n = stats.episodes

        def per(total: int, n: int = n) -> str:
            return f"{total / n:.2f}" if n else "-"

        rows.append(
            [
                stats.env_id,
                team_label(stats),
                per(sum(stats.turns.values())),
                per(sum(stats.tokens.values())),
                per(stats.tool_calls),
                per(stats.refused),
            ]
        )
    return SummarySection(
        title="team cost per episode",
        columns=["env", "team", "turns", "tokens", "tool calls", "refused turns"],
        rows=rows,
        note="means over finished episodes; turns include refused ones",
    )


def reasoning_section(episodes: Sequence[Episode]) -> SummarySection | None:
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for episode in episodes:
        record = episode.info.get("reasoning") if episode.status == "ok" else None
        if not isinstance(record, dict):
            continue
        split = str((record.get("task") or {}).get("split", ""))
        agent = " + ".join(episode.agents.values())
        groups[(str(record.get("source", episode.env_id)), split, agent)].append(
            float(record.get("score", 0.0))
        )
    if not groups:
        return None
    rows = []
    for (source, split, agent), scores in sorted(groups.items()):
        right = sum(1 for score in scores if score >= 1.0)
        mean = mean_interval(scores)
        assert mean is not None
        rows.append([source, split, agent, str(len(scores)), rate_with_interval(right, len(scores)),
                     f"{mean[0]:.3f} ± {mean[1]:.3f}"])  # fmt: skip
    return SummarySection(
        title="reasoning accuracy",
        columns=["task", "split", "agent", "episodes", "accuracy % (CI)", "mean score"],
        rows=rows,
        note="accuracy: score 1 (95% Wilson CI); mean score ± 1.96 SE (reasoning-gym gives partial scores)",
    )


def summarize(episodes: Sequence[Episode]) -> list[SummarySection]:
    """The run-summary provider: the team tables for team worlds, the accuracy table for reasoning tasks."""
    sections: list[SummarySection] = []
    reasoning = reasoning_section(episodes)
    if reasoning is not None:
        sections.append(reasoning)
    teams = [episode for episode in episodes if scorecard_for(episode.env_id).kind == TEAM]
    if teams:
        stats = team_stats(teams)
        sections += [
            accuracy_section(stats),
            flips_section(stats),
            monopolization_section(stats),
            cost_section(stats),
        ]
    return sections


# ----- the scorecard kinds ----------------------------------------------------------------------------
class TeamKind(ScorecardKind):
    """Team worlds: every seat shares the team's score; accuracy is the headline."""

    name = TEAM
    description = "team accuracy vs the solo baseline, consensus, flips, drift, monopolization, cost"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["team accuracy % (95% CI)", "mean score (95% CI)"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [rate_with_interval(score.successes, score.episodes), mean_with_interval(score, sign=False)]

    def note(self, card: Scorecard) -> str:
        return "every seat gets the team's score (1: the final answer was right); the team tables follow"

    def headline_label(self, card: Scorecard) -> str:
        return "team accuracy %"


class ReasoningKind(ScorecardKind):
    """One-seat reasoning tasks: accuracy (score 1) and mean score."""

    name = REASONING
    description = "accuracy and mean score of a checkable task"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["accuracy % (95% CI)", "mean score (95% CI)"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [rate_with_interval(score.successes, score.episodes), mean_with_interval(score, sign=False)]

    def note(self, card: Scorecard) -> str:
        return "accuracy: answers scoring 1 (95% Wilson CI); mean score ± 1.96 standard errors"

    def headline_label(self, card: Scorecard) -> str:
        return "accuracy %"


register_kind(TeamKind(), override=True)
register_kind(ReasoningKind(), override=True)

__all__ = [
    "REASONING",
    "TEAM",
    "ReasoningKind",
    "TeamKind",
    "TeamStats",
    "accuracy_section",
    "applies_to",
    "cost_section",
    "flips_section",
    "mean_interval",
    "monopolization_section",
    "reasoning_section",
    "summarize",
    "team_stats",
    "turn_tokens",
]
