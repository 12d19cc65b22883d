"""The web worlds' scorecard kind and run summaries (`palaestra.envs.web`).

The `web` kind (`Scorecard(kind="web")`, declared by the family) shows the browsing seat only
(`agent`, or `navigator` in `weblinx-v0`; the instructor is a simulator): task success with its
95% Wilson interval and the mean reward. Its headline is the success rate.

`summarize` adds, from each episode's `info`:
- site tasks (`web-v0`, `weblinx-v0`): success by site and task kind (state or information),
  with the mean number of turns and the share of refused actions;
- conversational runs (`weblinx-v0`): WebLINX's turn-level scores, averaged over episodes with
  95% intervals: intent match (the action's kind is the gold step's), element accuracy (it acts
  on the gold step's element), text match (typed, selected or said text), task success, and the
  dialogue's length (docs/references.md, WebLINX; `palaestra.envs.web.episode.Alignment`);
- MiniWoB++ runs: per task, the mean of the benchmark's reward and the share solved;
- `gui_graph-v0`: per size and split, success and path efficiency (the shortest solution's
  length over the steps taken, solved episodes only).

Episodes that did not finish (`status` other than `ok`) are left out and counted in the note.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from palaestra.core.records import Episode
from palaestra.core.scorecards import Scorecard
from palaestra.eval.scorecards import (
    ScorecardKind,
    SeatScore,
    mean_with_interval,
    rate_with_interval,
    register_kind,
)
from palaestra.eval.summaries import SummarySection

WEB_KIND = "web"
SITE_ENVS = ("web", "weblinx")
Z95 = 1.959964


class WebKind(ScorecardKind):
    """Web tasks: success and mean reward of the browsing seat."""

    name = WEB_KIND
    description = "task success (Wilson 95%) and mean reward of the browsing seat; WebLINX turn scores"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["success % (95% CI)", "mean reward (95% CI)"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [rate_with_interval(score.successes, score.episodes), mean_with_interval(score, sign=False)]

    def note(self, card: Scorecard) -> str:
        return (
            "scored seat: the one that browses (agent, or navigator; the instructor is a simulator); "
            "success = the task's full reward; CI: 95% Wilson (success), ± 1.96 standard errors (reward)"
        )


register_kind(WebKind(), override=True)


def _name(env_id: str) -> str:
    base = env_id.split("?", 1)[0]
    if base.startswith("miniwob:"):
        return "miniwob"
    return base.rsplit("-v", 1)[0]


def applies_to(env_id: str) -> bool:
    """True for the web envs (`web-v0`, `weblinx-v0`, `miniwob-v0`, `miniwob:TASK`, `gui_graph-v0`)."""
    return _name(env_id) in ("web", "weblinx", "miniwob", "gui_graph")


def _mean(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f} ± {Z95 * spread / math.sqrt(len(values)):.3f}"


def _scored_return(episode: Episode) -> float:
    seat = "navigator" if "navigator" in episode.returns else "agent"
    return float(episode.returns.get(seat, 0.0))


def _grouped(
    episodes: Sequence[Episode], key: Callable[[Episode], tuple[str, ...]]
) -> dict[tuple[str, ...], list[Episode]]:
    groups: dict[tuple[str, ...], list[Episode]] = defaultdict(list)
    for episode in episodes:
        groups[key(episode)].append(episode)
    return dict(sorted(groups.items()))


def _site_section(episodes: Sequence[Episode]) -> SummarySection:
    rows = []
    for (site, kind), members in _grouped(
        episodes, lambda e: (str(e.info.get("site")), str(e.info.get("kind")))
    ).items():
        solved = sum(1 for e in members if _scored_return(e) >= 1.0)
        steps = [float(e.info.get("steps", 0)) for e in members]
        refused = sum(float(e.info.get("errors", 0)) for e in members) / max(sum(steps), 1.0)
        rows.append(
            [
                site,
                kind,
                str(len(members)),
                rate_with_interval(solved, len(members)),
                _mean(steps),
                f"{100 * refused:.1f}",
            ]
        )
    return SummarySection(
        title="web tasks by site",
        columns=["site", "kind", "episodes", "success % (95% CI)", "turns", "refused %"],
        rows=rows,
        note="kind: state = checked in the site's database, info = the answer is checked; refused: "
        "actions the env turned down (unknown element, wrong field), over all turns",
    )


def _weblinx_section(episodes: Sequence[Episode]) -> SummarySection:
    rows = []
    for (agent,), members in _grouped(episodes, lambda e: (str(e.agents.get("navigator", "?")),)).items():
        scores = [e.info["weblinx"] for e in members]

        def values(key: str, scores: list[dict[str, Any]] = scores) -> list[float]:
            return [float(s[key]) for s in scores if s.get(key) is not None]

        rows.append(
            [
                agent,
                str(len(members)),
                _mean(values("intent_match")),
                _mean(values("element_accuracy")),
                _mean(values("text_match")),
                rate_with_interval(sum(1 for s in scores if s.get("task_success")), len(scores)),
                _mean(values("instructor_turns")),
            ]
        )
    return SummarySection(
        title="conversational navigation (WebLINX scores)",
        columns=[
            "navigator",
            "episodes",
            "intent match",
            "element accuracy",
            "text match",
            "task success %",
            "instructor turns",
        ],
        rows=rows,
        note="per turn, against the first gold step not yet matched; averaged per episode, then over "
        "episodes (± 1.96 standard errors); task success: 95% Wilson",
    )


def _miniwob_section(episodes: Sequence[Episode]) -> SummarySection:
    rows = []
    for (task,), members in _grouped(episodes, lambda e: (str(e.info.get("task_id")),)).items():
        rewards = [_scored_return(e) for e in members]
        solved = sum(1 for r in rewards if r >= 1.0)
        rows.append([task, str(len(members)), _mean(rewards), rate_with_interval(solved, len(members))])
    return SummarySection(
        title="MiniWoB++ by task",
        columns=["task", "episodes", "mean reward", "solved % (95% CI)"],
        rows=rows,
        note="the benchmark's own reward (-1 to 1; -1 when the episode ran out of steps or stopped)",
    )


def _gui_section(episodes: Sequence[Episode]) -> SummarySection:
    rows = []
    for (size, split), members in _grouped(
        episodes, lambda e: (str(e.info.get("size")), str(e.info.get("split")))
    ).items():
        solved = [e for e in members if e.info.get("success")]
        efficiency = [float(e.info["optimal"]) / max(float(e.info["steps"]), 1.0) for e in solved]
        rows.append(
            [size, split, str(len(members)), rate_with_interval(len(solved), len(members)), _mean(efficiency)]
        )
    return SummarySection(
        title="gui_graph by size",
        columns=["size", "split", "episodes", "success % (95% CI)", "path efficiency"],
        rows=rows,
        note="path efficiency: shortest solution length / steps taken, over solved episodes",
    )


def summarize(episodes: Sequence[Episode]) -> list[SummarySection]:
    """The web run-summary provider (see the module docstring)."""
    finished = [e for e in episodes if e.status == "ok" and applies_to(e.env_id)]
    left_out = sum(1 for e in episodes if e.status != "ok" and applies_to(e.env_id))
    by_name: dict[str, list[Episode]] = defaultdict(list)
    for episode in finished:
        by_name[_name(episode.env_id)].append(episode)
    sections = []
    sites = [e for name in SITE_ENVS for e in by_name.get(name, []) if "site" in e.info]
    if sites:
        sections.append(_site_section(sites))
    conversational = [e for e in by_name.get("weblinx", []) if "weblinx" in e.info]
    if conversational:
        sections.append(_weblinx_section(conversational))
    if by_name.get("miniwob"):
        sections.append(_miniwob_section(by_name["miniwob"]))
    gui = [e for e in by_name.get("gui_graph", []) if "optimal" in e.info]
    if gui:
        sections.append(_gui_section(gui))
    if left_out and sections:
        last = sections[-1]
        extra = f"{left_out} unfinished episode(s) left out"
        sections[-1] = SummarySection(
            last.title, last.columns, last.rows, note=f"{last.note}; {extra}" if last.note else extra
        )
    return sections


__all__ = ["WEB_KIND", "WebKind", "applies_to", "summarize"]
