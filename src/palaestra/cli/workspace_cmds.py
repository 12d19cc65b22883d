"""CLI commands of the workspace family: `palaestra mcp serve TARGET` and `palaestra mcp tools TARGET`.

Registered by `palaestra.cli.app` through `register(app)`; the MCP SDK loads only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from palaestra.cli.output import escape

mcp_app = typer.Typer(
    help="Serve worlds over the Model Context Protocol (MCP) for any MCP client.", no_args_is_help=True
)

TARGET_HELP = "workspace:TASK, code:TASK, or a service domain (retail, travel, crm, shop, a folder)"


@mcp_app.command("serve")
def serve(
    target: Annotated[str | None, typer.Argument(help=TARGET_HELP)] = None,
    sandbox: Annotated[
        Path | None, typer.Option("--sandbox", help="serve a running episode's sandbox folder")
    ] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="where to lay out a fresh world")] = None,
) -> None:
    """Serve a world's tools over MCP on stdin/stdout (point an MCP client's stdio command at this).

    The tools keep palaestra's rules: arguments checked before anything runs, a refused call is an
    error result and changes nothing. Runs until the client closes the connection."""
    import anyio

    from palaestra.cli.app import guarded
    from palaestra.envs.workspace.mcp_server import resolve, serve_stdio

    served = guarded(lambda: resolve(target, sandbox, directory))
    try:
        anyio.run(serve_stdio, served)
    finally:
        served.close()


@mcp_app.command("tools")
def tools(target: Annotated[str, typer.Argument(help=TARGET_HELP)]) -> None:
    """List the tools `palaestra mcp serve TARGET` would serve."""
    from rich.table import Table

    from palaestra.cli.app import console, guarded
    from palaestra.envs.workspace.mcp_server import resolve

    served = guarded(lambda: resolve(target))
    try:
        table = Table(title=escape(served.name))
        for column in ("tool", "writes", "description"):
            table.add_column(column)
        for spec in served.tools.values():
            table.add_row(escape(spec.name), "yes" if spec.write else "", escape(spec.description))
        console.print(table)
    finally:
        served.close()


def register(app: typer.Typer) -> None:
    """Add the workspace commands (`palaestra mcp ...`) to the `palaestra` app."""
    app.add_typer(mcp_app, name="mcp")
