"""The procedural worlds' scorecard (`procgen` kind) and run summaries (`palaestra.envs.procgen`).

Every procedural world writes its facts to `info["procgen"]` at the end of an episode (`world`,
`success`, and what the world knows: `oracle`, `size`, `depth` for the LUMINA probes; `family`
and `held_out` for XLand tasks; `achievements` for Crafter; `rounds`, `saved` for the team
worlds). This module pools them into the sections `palaestra run` prints and `palaestra report`
renders:

- **success by oracle intervention** (LUMINA probes): per world, knobs and agent, the success
  rate under each intervention (`none`, `plan`, `state`, `history`), 95% Wilson intervals. The
  intervention that lifts an agent most names the skill that limits it.
- **achievements** (Crafter): each achievement's unlock rate, the mean number unlocked and the
  Crafter score, `exp(mean_i ln(1 + s_i)) - 1` over the 22 achievements' success rates `s_i` in
  percent (Hafner, 2021; docs/references.md).
- **transfer by task family** (XLand tasks, and any training run's evaluation records through
  `transfer_rows`): success per family, training families beside held-out ones.
- **team outcomes** (crafting, wildfire): success, rounds used, the world's own measure.

Episodes that did not finish are left out and counted in the notes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from palaestra.core.records import Episode
from palaestra.core.scorecards import Scorecard
from palaestra.eval.ratings import wilson_interval
from palaestra.eval.scorecards import (
    ScorecardKind,
    SeatScore,
    mean_with_interval,
    rate_with_interval,
    register_kind,
)
from palaestra.eval.summaries import SummarySection

KIND = "procgen"
ORACLE_ORDER = ("none", "plan", "state", "history")
CRAFTER_ACHIEVEMENTS = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)  # fmt: skip
_PREFIXES = ("lumina:", "xland:", "crafter:", "textworld:")
_IDS = ("xland_text", "craft_together", "wildfire")


def applies_to(env_id: str) -> bool:
    """True for the procedural worlds' ids."""
    return env_id.startswith(_PREFIXES) or env_id.split("?", 1)[0].rsplit("-v", 1)[0] in _IDS


class ProcgenKind(ScorecardKind):
    """Success of every seat (a return of 1), with the mean return beside it."""

    name = KIND
    description = "success per seat; by oracle intervention, achievements, transfer by task family"

    def seat_columns(self, card: Scorecard, scores: Sequence[SeatScore]) -> list[str]:
        return ["success % (95% CI)", "mean return (95% CI)"]

    def seat_cells(self, card: Scorecard, score: SeatScore, scores: Sequence[SeatScore]) -> list[str]:
        return [rate_with_interval(score.successes, score.episodes), mean_with_interval(score, sign=False)]

    def note(self, card: Scorecard) -> str:
        return "success = the world's goal reached (return 1); CI: 95% Wilson (success), ± 1.96 SE (return)"


register_kind(ProcgenKind(), override=True)


def _facts(episode: Episode) -> dict[str, Any] | None:
    facts = episode.info.get("procgen") if episode.status == "ok" else None
    return facts if isinstance(facts, dict) else None


def _cell(successes: int, n: int) -> str:
    return rate_with_interval(successes, n) + f" n={n}" if n else "-"


def oracle_section(episodes: Iterable[Episode]) -> SummarySection | None:
    """Success per (world, size, depth, agent) under each oracle intervention."""
    counts: dict[tuple[str, str, str], dict[str, list[int]]] = defaultdict(
        lambda: defaultdict(lambda: [0, 0])
    )
    for episode in episodes:
        facts = _facts(episode)
        if facts is None or "oracle" not in facts:
            continue
        knobs = f"size={facts.get('size')} depth={facts.get('depth')}"
        agent = " + ".join(episode.agents.values())
        tally = counts[(str(facts.get("world")), knobs, agent)][str(facts["oracle"])]
        tally[0] += bool(facts.get("success"))
        tally[1] += 1
    if not counts:
        return None
    seen = {oracle for row in counts.values() for oracle in row}
    oracles = [o for o in ORACLE_ORDER if o in seen] + sorted(seen - set(ORACLE_ORDER))
    rows = [
        [world, knobs, agent, *(_cell(*row[o]) if o in row else "-" for o in oracles)]
        for (world, knobs, agent), row in sorted(counts.items())
    ]
    return SummarySection(
        title="success by oracle intervention",
        columns=["world", "knobs", "agent", *(f"oracle={o} success %" for o in oracles)],
        rows=rows,
        note="the intervention that lifts an agent most names the skill it lacks (plan: planning, "
        "state: state tracking, history: long context); 95% Wilson intervals",
    )


def crafter_score(rates_percent: Sequence[float]) -> float:
    """Crafter's score: exp(mean ln(1 + s_i)) - 1, s_i the achievements' success rates in percent."""
    if not rates_percent:
        return 0.0
    return math.exp(sum(math.log(1 + s) for s in rates_percent) / len(rates_percent)) - 1


def achievements_section(episodes: Iterable[Episode]) -> SummarySection | None:
    """Crafter's achievements: unlock rate of each, mean number unlocked, the Crafter score."""
    unlocked: list[set[str]] = []
    for episode in episodes:
        facts = _facts(episode)
        if facts is not None and isinstance(facts.get("achievements"), list):
            unlocked.append(set(facts["achievements"]))
    if not unlocked:
        return None
    n = len(unlocked)
    rates = {name: sum(name in got for got in unlocked) for name in CRAFTER_ACHIEVEMENTS}
    rows = [[name, rate_with_interval(count, n)] for name, count in rates.items() if count] or [
        ["(none)", "-"]
    ]
    mean = sum(len(got) for got in unlocked) / n
    score = crafter_score([100 * count / n for count in rates.values()])
    rows.append(["mean achievements per episode", f"{mean:.2f} of {len(CRAFTER_ACHIEVEMENTS)}"])
    rows.append(["Crafter score %", f"{score:.2f}"])
    return SummarySection(
        title="Crafter achievements",
        columns=["achievement", "unlocked % (95% CI)"],
        rows=rows,
        note=f"{n} finished episode(s); score = exp(mean ln(1 + s_i)) - 1 over all 22 achievements",
    )


def family_section(episodes: Iterable[Episode]) -> SummarySection | None:
    """Success per task family (XLand-style tasks), training and held-out families apart."""
    tally: dict[tuple[bool, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for episode in episodes:
        facts = _facts(episode)
        if facts is None or "family" not in facts:
            continue
        agent = " + ".join(episode.agents.values())
        cell = tally[(bool(facts.get("held_out")), str(facts["family"]), agent)]
        cell[0] += bool(facts.get("success"))
        cell[1] += 1
    if not tally:
        return None
    rows = [
        [family, "held-out" if held_out else "training", agent, _cell(*counts)]
        for (held_out, family, agent), counts in sorted(tally.items())
    ]
    return SummarySection(
        title="transfer by task family",
        columns=["family", "split", "agent", "success % (95% CI)"],
        rows=rows,
        note="held-out families are never drawn for training (split=train); 95% Wilson intervals",
    )


def team_section(episodes: Iterable[Episode]) -> SummarySection | None:
    """The team worlds (crafting, wildfire): success, rounds used and the world's own measure."""
    by_world: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for episode in episodes:
        facts = _facts(episode)
        if facts is not None and "rounds" in facts:
            by_world[(str(facts.get("world")), " + ".join(episode.agents.values()))].append(facts)
    if not by_world:
        return None
    rows = []
    for (world, agents), members in sorted(by_world.items()):
        n = len(members)
        wins = sum(bool(m.get("success")) for m in members)
        rounds = sum(float(m["rounds"]) for m in members) / n
        measure = [float(m["measure"]) for m in members if isinstance(m.get("measure"), int | float)]
        shown = f"{sum(measure) / len(measure):.3f}" if measure else "-"
        rows.append([world, agents, str(n), rate_with_interval(wins, n), f"{rounds:.1f}", shown])
    return SummarySection(
        title="team outcomes",
        columns=["world", "agents", "episodes", "success % (95% CI)", "mean rounds", "measure"],
        rows=rows,
        note="measure: craft_together the rounds a lone solver needs / the rounds used (team speed-up); "
        "wildfire the share of the forest saved",
    )


def summarize(episodes: Sequence[Episode]) -> list[SummarySection]:
    """The run-summary provider: every procgen section that applies to these episodes."""
    mine = [episode for episode in episodes if applies_to(episode.env_id)]
    if not mine:
        return []
    sections = [oracle_section(mine), achievements_section(mine), family_section(mine), team_section(mine)]
    unfinished = sum(episode.status != "ok" for episode in mine)
    found = [section for section in sections if section is not None]
    if unfinished and found:
        last = found[-1]
        found[-1] = SummarySection(
            title=last.title,
            columns=last.columns,
            rows=last.rows,
            note=f"{last.note}; {unfinished} unfinished episode(s) left out",
        )
    return found


def transfer_rows(records: Iterable[Mapping[str, Any]], stage: str = "final") -> list[list[str]]:
    """Rows of a transfer table from a training run's `eval.jsonl` records of `stage`: per env,
    training or held-out, the success rate with its interval."""
    tally: dict[tuple[bool, str], list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        if record.get("stage") != stage:
            continue
        cell = tally[(bool(record.get("held_out")), str(record.get("env_id")))]
        cell[0] += int(record.get("successes") or 0)
        cell[1] += int(record.get("episodes") or 0)
    return [
        [env_id, "held-out" if held_out else "training", _cell(*counts)]
        for (held_out, env_id), counts in sorted(tally.items())
    ]


def success_interval(successes: int, n: int) -> tuple[float, float, float]:
    """(rate, low, high): a success rate and its 95% Wilson interval."""
    low, high = wilson_interval(successes, n)
    return (successes / n if n else 0.0), low, high


__all__ = [
    "CRAFTER_ACHIEVEMENTS",
    "KIND",
    "ProcgenKind",
    "achievements_section",
    "applies_to",
    "crafter_score",
    "family_section",
    "oracle_section",
    "success_interval",
    "summarize",
    "team_section",
    "transfer_rows",
]
