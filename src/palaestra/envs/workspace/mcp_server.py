"""Serving worlds over the Model Context Protocol, with the official `mcp` SDK (1.x line, its
low-level `Server`; docs/references.md §12), so any MCP client acts on the same world.

Targets:

    --sandbox DIR          the sandbox of a running episode (workspace-v0 or code-v0: its
                           `world.json` says which); calls change that episode's world, at its
                           clock, and land in its tool log (`via = mcp`)
    workspace:TASK_ID      a fresh workspace world at the start of that task (day 1)
    code:TASK_ID           a fresh copy of that code task's repository
    DOMAIN                 a service domain (`retail`, `travel`, `crm`, `shop`, or a folder): its
                           agent tools over a fresh copy of its database

Every tool keeps the service kit's rules: the arguments are checked against the tool's schema by
palaestra (the SDK's own JSON Schema check is off, so errors read the same as in the env), and a
refused call comes back as a tool error (`isError`) with nothing changed.

Run it as `palaestra mcp serve TARGET` or `python -m palaestra.envs.workspace.mcp_server TARGET`;
it speaks MCP over stdio until the client closes it.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palaestra.core.registry import EnvError
from palaestra.envs.service.toolkit import ToolContext, ToolError, ToolSpec, parse_time, run_tool
from palaestra.envs.workspace.sandbox import (
    WORLD_FILE,
    CallResult,
    Sandbox,
    WorkspaceContext,
    connect,
    empty_database_image,
    execute_call,
    set_world_values,
    world_value,
)

SERVER_VERSION = "1"


def _mcp() -> Any:
    try:
        import mcp
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "MCP needs the mcp SDK: pip install 'palaestra[workspace]'", name=exc.name
        ) from exc
    return mcp


@dataclass
class Served:
    """What a server exposes: a name, the tools, and how one call runs (`call(name, arguments)`).

    `keep` holds whatever must stay open while the server runs (a sandbox, a connection)."""

    name: str
    tools: Mapping[str, ToolSpec]
    call: Callable[[str, Any], CallResult]
    keep: tuple[Any, ...] = ()

    def close(self) -> None:
        for item in self.keep:
            close = getattr(item, "close", None)
            if close is not None:
                close()


def sandbox_target(folder: Path) -> Served:
    """Serve a running episode's sandbox (see the module docstring)."""
    description = folder / WORLD_FILE
    if not description.is_file():
        raise EnvError(f"{folder} is not a workspace sandbox (no {WORLD_FILE})")
    world = json.loads(description.read_text())
    tools = _world_tools(str(world.get("world", "")))
    db = connect(folder / "services.db")
    root = folder / "files"

    def call(name: str, arguments: Any) -> CallResult:
        context = WorkspaceContext(
            db=db,
            now=float(world_value(db, "clock", "0") or 0),
            caller="agent",
            root=root,
            me=world_value(db, "me"),
            stage=int(world_value(db, "stage", "0") or 0),
        )
        return execute_call(tools, context, name, arguments, via="mcp")

    return Served(f"palaestra {world.get('world')} {world.get('task')}", tools, call, (db,))


def _world_tools(world: str) -> dict[str, ToolSpec]:
    if world == "workspace":
        from palaestra.envs.workspace.services import WORKSPACE_TOOLS

        return dict(WORKSPACE_TOOLS)
    if world == "code":
        from palaestra.envs.workspace.code_env import CODE_TOOLS

        return dict(CODE_TOOLS)
    raise EnvError(f"no MCP tools for world {world!r}")


def fresh_workspace(task_id: str, folder: Path | None) -> Served:
    from palaestra.envs.workspace.tasks import task_by_id
    from palaestra.envs.workspace.world import seed_image

    task = task_by_id(task_id)
    sandbox = Sandbox(folder)
    files, image = seed_image(task)
    sandbox.fill(files, image, {"world": "workspace", "task": task.id})
    set_world_values(
        sandbox.connection(), {"clock": parse_time(task.stages[0].day), "stage": 0, "me": task.me}
    )
    sandbox.close_database()
    served = sandbox_target(sandbox.folder)
    served.keep = (*served.keep, sandbox)
    return served


def fresh_code(task_id: str, folder: Path | None) -> Served:
    from palaestra.envs.workspace.code_env import START
    from palaestra.envs.workspace.code_repos import code_task

    try:
        task = code_task(task_id)
    except ValueError as exc:
        raise EnvError(str(exc)) from None
    sandbox = Sandbox(folder)
    sandbox.fill(
        {p: t.encode() for p, t in task.repository.items()},
        empty_database_image(),
        {"world": "code", "task": task.id},
    )
    set_world_values(sandbox.connection(), {"clock": parse_time(START), "stage": 0, "me": ""})
    sandbox.close_database()
    served = sandbox_target(sandbox.folder)
    served.keep = (*served.keep, sandbox)
    return served


def service_domain(name: str) -> Served:
    """A service domain's agent tools over a fresh copy of its database (not logged: the domain's
    database has no tool log)."""
    from palaestra.envs.service.domain import load_domain

    domain = load_domain(name)
    tools = {spec.name: spec for spec in domain.tools_of("agent")}
    db: sqlite3.Connection = domain.database.open()

    def call(tool_name: str, arguments: Any) -> CallResult:
        spec = tools.get(tool_name)
        if spec is None:
            return CallResult(
                f"Error: unknown tool {tool_name[:64]!r}; available tools: {', '.join(tools)}", False
            )
        try:
            text = run_tool(spec, ToolContext(db=db, now=domain.start), spec.check_arguments(arguments))
        except ToolError as exc:
            return CallResult(f"Error: {exc}", False, spec.write)
        except Exception as exc:  # noqa: BLE001 - a bug in a domain tool is the caller's error message
            return CallResult(
                f"Error: {tool_name} failed inside the tool ({type(exc).__name__}: {exc})", False
            )
        return CallResult(text, True, spec.write)

    return Served(f"palaestra service {domain.name}", tools, call, (db,))


def resolve(target: str | None, sandbox: Path | None = None, folder: Path | None = None) -> Served:
    """The world a target names (see the module docstring)."""
    if sandbox is not None:
        return sandbox_target(sandbox)
    if not target:
        raise EnvError("name a target (workspace:TASK, code:TASK, a service domain) or give --sandbox DIR")
    kind, _, rest = target.partition(":")
    if kind == "workspace" and rest:
        return fresh_workspace(rest, folder)
    if kind == "code" and rest:
        return fresh_code(rest, folder)
    if kind == "service" and rest:
        return service_domain(rest)
    return service_domain(target)


def mcp_tool_list(tools: Mapping[str, ToolSpec]) -> list[Any]:
    """The tools as the SDK's `Tool` records (name, description, input JSON Schema)."""
    types = _mcp().types
    return [
        types.Tool(
            name=spec.name,
            description=spec.description,
            inputSchema=spec.json_schema()["function"]["parameters"],
        )
        for spec in tools.values()
    ]


def build_server(served: Served) -> Any:
    """An MCP `Server` (low-level API) listing and calling the served tools."""
    mcp = _mcp()
    from mcp.server.lowlevel import Server

    server = Server(served.name, version=SERVER_VERSION)
    listed = mcp_tool_list(served.tools)

    @server.list_tools()
    async def list_tools() -> list[Any]:
        return listed

    # palaestra checks the arguments itself (the kit's rules and messages), so the SDK's check is off.
    @server.call_tool(validate_input=False)
    async def call_tool(name: str, arguments: dict[str, Any] | None) -> Any:
        result = served.call(name, arguments or {})
        return mcp.types.CallToolResult(
            content=[mcp.types.TextContent(type="text", text=result.text)], isError=not result.ok
        )

    return server


async def serve_stdio(served: Served) -> None:
    """Speak MCP over stdin/stdout until the client closes the stream."""
    from mcp.server.stdio import stdio_server

    server = build_server(served)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="palaestra.envs.workspace.mcp_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("target", nargs="?", help="workspace:TASK, code:TASK, or a service domain")
    parser.add_argument("--sandbox", type=Path, help="serve this running episode's sandbox folder")
    parser.add_argument(
        "--dir", type=Path, help="where to lay out a fresh world (default: a temporary folder)"
    )
    options = parser.parse_args(argv)
    try:
        served = resolve(options.target, options.sandbox, options.dir)
    except (EnvError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import anyio

    try:
        anyio.run(serve_stdio, served)
    finally:
        served.close()
    return 0


__all__ = ["Served", "build_server", "main", "mcp_tool_list", "resolve", "serve_stdio"]


if __name__ == "__main__":
    sys.exit(main())
