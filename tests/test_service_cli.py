"""The service CLI: `palaestra validate`, `palaestra domain new|list`, and `palaestra run` printing
the pass^k tables."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from palaestra.cli.app import app


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_validate_a_builtin_domain() -> None:
    code, output = invoke("validate", "crm")
    assert code == 0, output
    assert "crm: 25/25 tasks valid" in output
    code, output = invoke("validate", "retail", "--task", "retail-011", "-v")
    assert code == 0 and "retail-011" in output and "1/1 tasks valid" in output


def test_new_domain_validates_runs_and_fails_when_broken(tmp_path: Path) -> None:
    code, output = invoke("domain", "new", "shop", "--dir", str(tmp_path))
    assert code == 0, output
    folder = tmp_path / "shop"
    code, output = invoke("validate", str(folder))
    assert code == 0 and "2/2 tasks valid" in output
    code, output = invoke(
        "run",
        f"service:{folder}",
        "--agents",
        "oracle,scripted_user",
        "--episodes",
        "2",
        "--trials",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert code == 0, output
    assert "pass^k by domain" in output and "pass^k by subset" in output
    assert "1.000" in output
    # Break the first task's gold actions: validate names it and exits 1.
    lines = (folder / "tasks.jsonl").read_text().splitlines()
    task = json.loads(lines[0])
    task["gold_actions"][1]["arguments"]["plan"] = "basic"
    (folder / "tasks.jsonl").write_text("\n".join([json.dumps(task), *lines[1:]]) + "\n")
    code, output = invoke("validate", str(folder))
    assert code == 1 and "shop-001" in output and "1 failed" in output


def test_user_errors_exit_2() -> None:
    code, output = invoke("validate", "nowhere")
    assert code == 2 and "unknown service domain 'nowhere'" in output
    code, output = invoke("domain", "new", "Not OK")
    assert code == 2 and "must start with a lowercase letter" in output


def test_domain_list_shows_the_builtin_domains() -> None:
    code, output = invoke("domain", "list")
    assert code == 0
    for name in ("retail", "travel", "crm", "unsolvable", "confidentiality"):
        assert name in output
