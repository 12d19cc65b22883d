"""CLI commands of the service family: `palaestra validate DOMAIN`, `palaestra domain new NAME`,
`palaestra domain list`.

Registered by `palaestra.cli.app` through `register(app)`; everything heavy is imported inside
the commands so the CLI starts fast.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from palaestra.cli.output import escape

domain_app = typer.Typer(
    help="Service domains: list the built-in ones, scaffold a new one.", no_args_is_help=True
)


def validate(
    domain: Annotated[
        str,
        typer.Argument(
            help="a service domain (retail, travel, crm, shop, a folder) or a family target (NAME[:ARG])"
        ),
    ],
    task: Annotated[list[str] | None, typer.Option("--task", "-t", help="only these task ids")] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="a row for every task, not only failures")
    ] = False,
) -> None:
    """Check every task of a world: the gold solution scores 1.0 and doing nothing fails. DOMAIN is
    a service domain (the oracle with the scripted customer, exploit probes, deterministic tools)
    or a family's validator target (`NAME` or `NAME:ARG`, e.g. `teams`). Exits 1 if any task fails."""
    from rich.table import Table

    from palaestra.cli.app import console, guarded
    from palaestra.core.validation import find_validator
    from palaestra.envs.service.validation import validate_domain

    found = guarded(lambda: find_validator(domain))
    if found is not None:
        validator, argument = found
        _print_family_report(guarded(lambda: validator(argument, task or None)), verbose)
        return

    report = guarded(lambda: validate_domain(domain, tasks=task or None))
    rows = report.checks if verbose else report.failures
    if rows:
        table = Table(title=escape(f"validate {report.domain}: {report.path}"))
        for column in ("task", "subset", "gold", "writes", "oracle", "null", "result"):
            table.add_column(
                column, justify="right" if column in ("gold", "writes", "oracle", "null") else "left"
            )
        for check in rows:
            verdict = "[green]ok[/]" if check.ok else "[red]" + escape("; ".join(check.problems)) + "[/]"
            if check.warnings and verbose:
                verdict += " [yellow](" + escape("; ".join(check.warnings)) + ")[/]"
            table.add_row(
                escape(check.task_id),
                escape(check.subset),
                str(check.gold_actions),
                str(check.gold_writes),
                "-" if check.oracle_reward is None else f"{check.oracle_reward:g}",
                "-" if check.null_reward is None else f"{check.null_reward:g}",
                verdict,
            )
        console.print(table)
    failed = len(report.failures)
    subsets = sorted({c.subset for c in report.checks})
    summary = (
        f"{report.domain}: {len(report.checks) - failed}/{len(report.checks)} tasks valid "
        f"(subsets: {', '.join(subsets)})"
    )
    warned = sum(1 for c in report.checks if c.warnings)
    if warned and not verbose:
        summary += f"; {warned} with warnings (-v shows them)"
    if failed:
        console.print(f"[red]{escape(summary)}; {failed} failed[/]", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"[green]{escape(summary)}[/]", highlight=False)


def _print_family_report(report: object, verbose: bool) -> None:
    """The table and summary line of a family validator's `ValidationReport`; exits 1 on failures."""
    from rich.table import Table

    from palaestra.cli.app import console
    from palaestra.core.validation import ValidationReport

    assert isinstance(report, ValidationReport)
    rows = report.checks if verbose else report.failures
    if rows:
        extra = sorted({name for check in rows for name in check.extra})
        table = Table(title=escape(f"validate {report.target}"))
        for column in ("task", "subset", "gold", "null", *extra, "result"):
            table.add_column(column, justify="right" if column in ("gold", "null") else "left")
        for check in rows:
            verdict = "[green]ok[/]" if check.ok else "[red]" + escape("; ".join(check.problems)) + "[/]"
            if check.warnings and verbose:
                verdict += " [yellow](" + escape("; ".join(check.warnings)) + ")[/]"
            cells = [check.extra.get(name, "") for name in extra]
            table.add_row(
                escape(check.task_id),
                escape(check.subset),
                "-" if check.gold is None else f"{check.gold:g}",
                "-" if check.null is None else f"{check.null:g}",
                *map(escape, cells),
                verdict,
            )
        console.print(table)
    failed = len(report.failures)
    summary = f"{report.target}: {len(report.checks) - failed}/{len(report.checks)} tasks valid"
    if failed or not report.checks:
        console.print(f"[red]{escape(summary)}; {failed} failed[/]", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"[green]{escape(summary)}[/]", highlight=False)


@domain_app.command("new")
def domain_new(
    name: Annotated[str, typer.Argument(help="the domain name: lowercase letters, digits and _")],
    directory: Annotated[Path, typer.Option("--dir", help="folder to create the domain in")] = Path("."),
    force: Annotated[bool, typer.Option(help="write into an existing, non-empty folder")] = False,
) -> None:
    """Write a small working domain (schema, seed data, policy, tools, tasks) to start from."""
    from palaestra.cli.app import console, guarded
    from palaestra.cli.service_scaffold import new_domain

    folder = guarded(lambda: new_domain(name, directory, force=force))
    console.print(f"wrote domain {name} to {folder}", markup=False)
    console.print(f"check it:  palaestra validate {folder}", markup=False)
    console.print(
        f"run it:    palaestra run service:{folder} --agents oracle,scripted_user --episodes 2", markup=False
    )


@domain_app.command("list")
def domain_list() -> None:
    """List the built-in service domains with their tools, tasks and subsets."""
    from rich.table import Table

    from palaestra.cli.app import console, guarded
    from palaestra.envs.service.domain import builtin_domains, load_domain

    table = Table(title="service domains", caption="run one as DOMAIN-v0 or service:DOMAIN")
    for column in ("domain", "tools (agent/user)", "tasks", "subsets (tasks)", "description"):
        table.add_column(column)
    for name in builtin_domains():
        domain = guarded(functools.partial(load_domain, name))
        table.add_row(
            escape(name),
            f"{len(domain.tools_of('agent'))}/{len(domain.tools_of('user'))}",
            str(len(domain.tasks)),
            escape(", ".join(f"{s} ({sum(t.subset == s for t in domain.tasks)})" for s in domain.subsets)),
            escape(domain.config.description),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the service commands to the `palaestra` app."""
    app.command("validate")(validate)
    app.add_typer(domain_app, name="domain")
