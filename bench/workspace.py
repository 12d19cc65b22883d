"""Workspace worlds: episodes per second with scripted agents, and the scores of agents of known
behaviour (gold, always re-reads, never re-reads, does nothing), per day and under turn control.

Tables:
1. throughput: whole episodes per second through the real runner (`run_sync`, episodes written
   to a temporary run folder), per world (`workspace-v0`, `code-v0`, `tictoc-v0`) and scripted
   agent; no model time, so this is the worlds' own cost (sandbox laid out per episode, SQLite,
   openpyxl and pypdf documents, checkers; test subprocesses in code-v0);
2. score by day on every workspace-v0 task: `workspace_rereads` (always re-reads) against
   `workspace_stale` (never re-reads), with gold and do-nothing for reference; the drop after the
   first outside change is the "from 1st change" column;
3. code-v0 efficiency by repository size (gold and re-reading agents);
4. tictoc-v0 alignment by time-sensitivity level;
5. turn control: success and cost of the gold and re-reading agents on the contracts tasks (the
   longest days) under a fixed limit of 20 turns a day, with reminders at 8 left, and with
   extensions (10 more turns, at most twice).

Run: .venv/bin/python bench/workspace.py [--episodes 32] [--quick]
(`--quick`: 8 workspace episodes per agent, tiny and small repositories only.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from palaestra.core.records import Episode
from palaestra.eval.summaries import SummarySection
from palaestra.eval.workspace import code_section, stage_section, tictoc_section, turn_section
from palaestra.rollout.runner import RunConfig, run_sync


def run(
    env_id: str, agent: str, episodes: int, options: dict[str, Any] | None = None
) -> tuple[list[Episode], float]:
    with tempfile.TemporaryDirectory(prefix="palaestra-bench-") as folder:
        started = time.perf_counter()
        run_sync(
            RunConfig(env_id=env_id, agents=[agent], episodes=episodes, env_options=options or {}), folder
        )
        seconds = time.perf_counter() - started
        lines = (Path(folder) / "episodes.jsonl").read_text().splitlines()
    return [Episode.model_validate(json.loads(line)) for line in lines], seconds


def show(console: Console, section: SummarySection | None) -> None:
    if section is None:
        return
    table = Table(title=section.title)
    for column in section.columns:
        table.add_column(column)
    for row in section.rows:
        table.add_row(*row)
    console.print(table)
    if section.note:
        console.print(section.note, style="dim")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--episodes", type=int, default=32, help="workspace-v0 episodes per agent (32 = every task)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer episodes, small repositories only")
    options = parser.parse_args()
    console = Console(width=220)
    days = 8 if options.quick else options.episodes
    code_sizes = ["tiny", "small"] if options.quick else ["tiny", "small", "medium", "large"]

    throughput = Table(title="throughput with scripted agents (runner, episodes written to disk)")
    for column in ("world", "agent", "episodes", "seconds", "episodes/s", "mean score"):
        throughput.add_column(column)
    everything: list[Episode] = []

    def record(
        env_id: str, agent: str, count: int, env_options: dict[str, Any] | None = None
    ) -> list[Episode]:
        episodes, seconds = run(env_id, agent, count, env_options)
        scores = [e.info.get("score", 0.0) for e in episodes if e.status == "ok"]
        label = env_id + (f" {env_options}" if env_options else "")
        throughput.add_row(
            label,
            agent,
            str(len(episodes)),
            f"{seconds:.1f}",
            f"{len(episodes) / seconds:.2f}",
            f"{sum(scores) / max(len(scores), 1):.3f}",
        )
        everything.extend(episodes)
        return episodes

    for agent in ("workspace_gold", "workspace_rereads", "workspace_stale", "workspace_idle"):
        record("workspace-v0", agent, days, {"turn_limit": 60})
    code_runs = []
    for size in code_sizes:
        for agent in ("workspace_gold", "workspace_rereads"):
            code_runs += record("code-v0", agent, 6, {"size": size})
    tictoc_runs = []
    for agent in ("workspace_gold", "workspace_rereads", "workspace_stale"):
        tictoc_runs += record("tictoc-v0", agent, 12)
    console.print(throughput)

    show(console, stage_section([e for e in everything if e.env_id == "workspace-v0"]))
    show(console, code_section(code_runs))
    show(console, tictoc_section(tictoc_runs))

    # The contracts tasks have the longest days (a dozen writes on day 1): where 20 turns a day bite.
    turns = []
    for policy in (
        {"turn_policy": "fixed"},
        {"turn_policy": "reminders", "remind_at": "8"},
        {"turn_policy": "extensions"},
    ):
        for agent in ("workspace_gold", "workspace_rereads"):
            turns += run("workspace-v0", agent, 4, {"scenario": "contracts", "turn_limit": 20, **policy})[0]
    show(console, turn_section(turns))


if __name__ == "__main__":
    main()
