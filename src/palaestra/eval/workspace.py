"""Scorecard and run summaries of the workspace worlds (`workspace-v0`, `code-v0`, `tictoc-v0`).

The `workspace` scorecard kind shows the agent seat's strict success (every checker passed, all
hidden tests passed, every question answered right) with its 95% Wilson interval, and the mean
score (passed checker weight / total; 1 or 0 for code; the share of right answers for TicToc).

`summarize` adds, from the episodes' `info`:
- per-stage scores (workspace-v0): each day's mean score by agent, the final checks, and the
  mean score before and from the first outside change (the drop ClawMark's days show);
- efficiency by repository size (code-v0): success, tool calls, tokens read, redundant reads,
  edits, edits reverted, test runs (LoCoBench-Agent's comprehension/efficiency trade-off);
- time-aware calls by sensitivity level (tictoc-v0): needed calls made and missed, redundant
  calls, right skips, and the alignment rate with the world's labels;
- turn control: success and cost (turns, tool calls, reminders, extensions) under each policy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from palaestra.core.records import Episode
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

KIND = "workspace"
WORLDS = ("workspace", "code", "tictoc")


class WorkspaceKind(ScorecardKind):
    """Strict success and mean score of the agent seat."""

    name = KIND
    description = (
        "strict success and mean weighted score of the agent; per-stage, efficiency and TicToc tables"
    )

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["strict success % (95% CI)", "mean score (95% CI)"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [rate_with_interval(score.successes, score.episodes), mean_with_interval(score, sign=False)]

    def note(self, card: Scorecard) -> str:
        return (
            "score: passed checker weight / total (code: hidden tests pass; tictoc: share of right answers); "
            "strict success: score 1; CI: 95% Wilson (success), ± 1.96 standard errors (score)"
        )

    def headline_label(self, card: Scorecard) -> str:
        return "strict success %"


register_kind(WorkspaceKind(), override=True)


def applies_to(env_id: str) -> bool:
    return scorecard_for(env_id).kind == KIND


def _mean(values: Sequence[float]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "-"


def _avg(values: Sequence[float], digits: int = 1) -> str:
    return f"{sum(values) / len(values):.{digits}f}" if values else "-"


def _finished(episodes: Sequence[Episode], world: str) -> list[Episode]:
    return [e for e in episodes if e.status == "ok" and e.info.get("world") == world]


def _agent(episode: Episode) -> str:
    return episode.agents.get("agent", "?")


def stage_section(episodes: Sequence[Episode]) -> SummarySection | None:
    done = _finished(episodes, "workspace")
    if not done:
        return None
    days = max(len(e.info.get("stage_scores", [])) for e in done)
    rows = []
    by_agent: dict[str, list[Episode]] = defaultdict(list)
    for episode in done:
        by_agent[_agent(episode)].append(episode)
    for agent, members in sorted(by_agent.items()):
        per_day = [
            [e.info["stage_scores"][d] for e in members if len(e.info["stage_scores"]) > d]
            for d in range(days)
        ]
        finals = [e.info["final_score"] for e in members if e.info.get("final_score") is not None]
        before, after = [], []
        for e in members:
            first = e.info.get("first_change_stage")
            if first is None:
                continue
            before += e.info["stage_scores"][:first]
            after += e.info["stage_scores"][first:]
        strict = sum(1 for e in members if e.info.get("strict_success"))
        rows.append(
            [
                agent,
                str(len(members)),
                *(_mean(values) for values in per_day),
                _mean(finals),
                _mean(before),
                _mean(after),
                _mean([e.info["score"] for e in members]),
                rate_with_interval(strict, len(members)),
            ]
        )
    return SummarySection(
        title="workspace: score by day",
        columns=[
            "agent",
            "episodes",
            *(f"day {d + 1}" for d in range(days)),
            "final checks",
            "before 1st change",
            "from 1st change",
            "task score",
            "strict success % (CI)",
        ],
        rows=rows,
        note="day d: mean passed weight / total of that day's checkers (over tasks that have a day d); the "
        "change "
        "columns split every day's score at the task's first outside change",
    )


def code_section(episodes: Sequence[Episode]) -> SummarySection | None:
    done = _finished(episodes, "code")
    if not done:
        return None
    groups: dict[tuple[str, str], list[Episode]] = defaultdict(list)
    order = {"tiny": 0, "small": 1, "medium": 2, "large": 3}
    for episode in done:
        groups[(_agent(episode), str(episode.info.get("size")))].append(episode)
    rows = []
    for (agent, size), members in sorted(
        groups.items(), key=lambda item: (item[0][0], order.get(item[0][1], 9))
    ):

        def values(key: str, group: list[Episode] = members) -> list[float]:
            return [float(e.info.get(key, 0)) for e in group]

        wins = sum(1 for e in members if e.info.get("strict_success"))
        rows.append(
            [
                agent,
                size,
                _avg(values("files"), 0),
                str(len(members)),
                rate_with_interval(wins, len(members)),
                _avg(values("tool_calls")),
                _avg(values("tokens_read"), 0),
                _avg(values("redundant_reads")),
                _avg(values("edits")),
                _avg(values("edits_reverted")),
                _avg(values("test_runs")),
            ]
        )
    return SummarySection(
        title="code-v0: success and efficiency by repository size",
        columns=[
            "agent",
            "size",
            "files",
            "episodes",
            "success % (CI)",
            "tool calls",
            "tokens read",
            "redundant reads",
            "edits",
            "edits reverted",
            "test runs",
        ],
        rows=rows,
        note="means per episode; tokens read ≈ characters returned by list/read/search ÷ 4; a redundant read "
        "repeats lines already read since the file last changed; a reverted edit brings a file back to an "
        "earlier version",
    )


def tictoc_section(episodes: Sequence[Episode]) -> SummarySection | None:
    done = _finished(episodes, "tictoc")
    if not done:
        return None
    rows = []
    by_agent: dict[str, list[Episode]] = defaultdict(list)
    for episode in done:
        by_agent[_agent(episode)].append(episode)
    for agent, members in sorted(by_agent.items()):
        totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for episode in members:
            for level, counts in episode.info["tictoc"]["levels"].items():
                for key, value in counts.items():
                    if key != "alignment":
                        totals[level][key] += int(value)
        for level in ("high", "medium", "low", "all"):
            if level == "all":
                counts = defaultdict(int)
                for per_level in totals.values():
                    for key, value in per_level.items():
                        counts[key] += value
            else:
                counts = totals.get(level, defaultdict(int))
            asked = counts["questions"]
            aligned = counts["needed_made"] + counts["skipped_ok"]
            right = sum(e.info["answers_correct"] for e in members)
            answers = (
                f"{100 * right / sum(e.info['questions'] for e in members):.1f}" if level == "all" else ""
            )
            rows.append(
                [
                    agent,
                    level,
                    str(asked),
                    str(counts["needed_made"]),
                    str(counts["needed_missed"]),
                    str(counts["redundant"]),
                    str(counts["skipped_ok"]),
                    f"{100 * aligned / asked:.1f}" if asked else "-",
                    answers,
                ]
            )
    return SummarySection(
        title="tictoc-v0: tool calls against the world's staleness labels, by time sensitivity",
        columns=[
            "agent",
            "level",
            "questions",
            "needed, made",
            "needed, missed",
            "redundant",
            "skipped, right",
            "alignment %",
            "answers right %",
        ],
        rows=rows,
        note="a call is needed when the fact was never asked or its freshness window (high 10 min, medium 2 "
        "h, low 7 "
        "days) has passed since the last needed call; alignment = questions where calling matched the label",
    )


def turn_section(episodes: Sequence[Episode]) -> SummarySection | None:
    done = [
        e for e in episodes if e.status == "ok" and e.info.get("world") in WORLDS and "turn_control" in e.info
    ]
    if not done:
        return None
    groups: dict[tuple[str, str, str], list[Episode]] = defaultdict(list)
    for episode in done:
        control = episode.info["turn_control"]
        policy = f"{control['policy']} (limit {control['limit']})"
        groups[(str(episode.info["world"]), _agent(episode), policy)].append(episode)
    rows = []
    for (world, agent, policy), members in sorted(groups.items()):

        def stat(key: str, group: list[Episode] = members) -> list[float]:
            return [float(e.info["turn_stats"].get(key, 0)) for e in group]

        wins = sum(1 for e in members if e.info.get("strict_success"))
        rows.append(
            [
                world,
                agent,
                policy,
                str(len(members)),
                rate_with_interval(wins, len(members)),
                _mean([e.info["score"] for e in members]),
                _avg(stat("turns")),
                _avg([float(e.info.get("tool_calls", 0)) for e in members]),
                _avg(stat("reminders")),
                _avg(stat("extensions")),
                _avg(stat("out_of_turns")),
            ]
        )
    return SummarySection(
        title="turn control: success and cost under each policy",
        columns=[
            "world",
            "agent",
            "policy",
            "episodes",
            "strict success % (CI)",
            "mean score",
            "turns",
            "tool calls",
            "reminders",
            "extensions",
            "segments out of turns",
        ],
        rows=rows,
        note="means per episode; a segment is a day (workspace), the task (code) or a question (tictoc)",
    )


def summarize(episodes: Sequence[Episode]) -> list[SummarySection]:
    """The run-summary provider of the workspace family (see the module docstring)."""
    sections = [
        stage_section(episodes),
        code_section(episodes),
        tictoc_section(episodes),
        turn_section(episodes),
    ]
    return [section for section in sections if section is not None]


__all__ = [
    "KIND",
    "WorkspaceKind",
    "applies_to",
    "code_section",
    "stage_section",
    "summarize",
    "tictoc_section",
    "turn_section",
]
