"""Write the workspace tasks (`src/palaestra/envs/workspace/data/tasks.jsonl`).

Eight professional scenarios, four variants each (different people, numbers, dates, and whether
the world's change between days is announced or silent):

    expenses     finance: total a month's travel from an .xlsx sheet; a cell is corrected overnight
    scheduling   operations: book a meeting at the earliest common free time; an attendee becomes
                 busy; then invitations arrive, one of which clashes with the moved meeting
    quotes       sales: a PDF quote from product records; the client changes a quantity, or a
                 price record changes
    onboarding   people: first-day events and a welcome mail; the start date moves
    contracts    legal: renewal dates read from contract PDFs into a tracker; a contract is amended
    incidents    IT operations: an incident page and status mail; it resolves overnight
    procurement  purchasing: the policy's vendor from a quotes sheet; a quote changes the choice
    status       project management: a status report from task records; tasks close and move

Every value a checker expects is computed from the same data the world is built from. Run from
the repository root; the output is deterministic:

    .venv/bin/python tools/workspace_tasks/generate.py        # writes the tasks file
    .venv/bin/palaestra validate workspace                     # gold 1.0 every day; idle and stale fail
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import office
import operations

from palaestra.envs.workspace.tasks import Task

OUT = (
    Path(__file__).resolve().parents[2] / "src" / "palaestra" / "envs" / "workspace" / "data" / "tasks.jsonl"
)


def build() -> list[dict]:
    tasks = []
    for scenario, variants in [*office.SCENARIOS, *operations.SCENARIOS]:
        for index, variant in enumerate(variants):
            written = scenario(index, variant)
            Task.model_validate(written)  # fail here, not when the env loads it
            tasks.append(written)
    ids = [t["id"] for t in tasks]
    assert len(ids) == len(set(ids)), "task ids repeat"
    return tasks


def main() -> None:
    out = Path(sys.argv[1]) / "tasks.jsonl" if len(sys.argv) > 1 else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    tasks = build()
    out.write_text("".join(json.dumps(t, sort_keys=True) + "\n" for t in tasks))
    print(f"wrote {len(tasks)} tasks to {out}")


if __name__ == "__main__":
    main()
