"""`palaestra validate NAME[:ARG]` dispatches to a family's registered validator."""

from __future__ import annotations

from collections.abc import Sequence

from typer.testing import CliRunner

from palaestra.cli.app import app
from palaestra.core.validation import (
    VALIDATORS,
    ValidationReport,
    find_validator,
    null_check,
    register_validator,
)


def fake_validator(argument: str, tasks: Sequence[str] | None) -> ValidationReport:
    names = list(tasks or ["good", "bad"])
    checks = [null_check(name, 1.0 if name == "good" else 0.5, 0.0, subset=argument) for name in names]
    return ValidationReport(target=f"fake:{argument}", checks=checks)


def test_null_check_verdicts() -> None:
    assert null_check("t", 1.0, 0.0).ok
    assert "gold scored 0.5" in null_check("t", 0.5, 0.0).problems[0]
    assert "cannot fail" in null_check("t", 1.0, 1.0).problems[0]


def test_find_validator_splits_the_argument_and_leaves_service_domains_alone() -> None:
    register_validator("fake", f"{__name__}:fake_validator", "a test validator")
    try:
        found = find_validator("fake:grid")
        assert found is not None and found[1] == "grid"
        assert find_validator("retail") is None
        result = CliRunner().invoke(app, ["validate", "fake:grid", "-t", "good"])
        assert result.exit_code == 0, result.output
        assert "fake:grid: 1/1 tasks valid" in result.output
        result = CliRunner().invoke(app, ["validate", "fake:grid"])
        assert result.exit_code == 1
        assert "gold scored 0.5" in result.output and "1 failed" in result.output
    finally:
        VALIDATORS._entries.pop("fake", None)  # leave the registry as other tests found it
