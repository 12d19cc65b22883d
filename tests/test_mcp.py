"""MCP: the workspace services and the service domains' tools served with the official `mcp` SDK,
reached with the SDK's own stdio client; palaestra agents calling tools through MCP."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from palaestra.agents.mcp_tools import McpToolClient, tool_calls_of
from palaestra.cli import workspace_cmds
from palaestra.core.messages import Message
from palaestra.envs.workspace.env import WorkspaceEnv
from palaestra.envs.workspace.services import WORKSPACE_TOOLS
from palaestra.rollout.runner import RunConfig, run_sync

SERVER = [sys.executable, "-m", "palaestra.envs.workspace.mcp_server"]


def test_the_sdk_client_lists_an_episodes_tools_and_a_call_changes_its_world() -> None:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = WorkspaceEnv(task="quotes-2")
    env.reset()
    params = StdioServerParameters(
        command=SERVER[0], args=[*SERVER[1:], "--sandbox", str(env.sandbox.folder)]
    )

    async def session() -> tuple[list[str], str, str, bool]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            listed = await client.list_tools()
            done = await client.call_tool(
                "update_record",
                {"collection": "deals", "record_id": "D-221", "field": "stage", "value": "won"},
            )
            refused = await client.call_tool("update_record", {"collection": "deals"})
            return (
                [t.name for t in listed.tools],
                done.content[0].text,
                refused.content[0].text,
                refused.isError,
            )

    names, done, refused, is_error = asyncio.run(session())
    assert set(names) == set(WORKSPACE_TOOLS)
    assert done == "deals/D-221: stage = 'won'"
    assert is_error and refused.startswith("Error: update_record: missing required argument")
    row = env.sandbox.connection().execute("SELECT fields FROM kb_record WHERE id = 'D-221'").fetchone()
    assert json.loads(row[0])["stage"] == "won"
    log = env.sandbox.connection().execute("SELECT via, ok FROM tool_log ORDER BY seq").fetchall()
    assert [tuple(r) for r in log] == [("mcp", 1), ("mcp", 0)]
    env.close()


def test_a_service_domain_is_served_with_its_agent_tools_and_its_rules() -> None:
    async def session() -> tuple[list[dict], tuple[str, bool]]:
        async with McpToolClient(SERVER[0], [*SERVER[1:], "retail"]) as client:
            return await client.list_tools(), await client.call("get_order_details", {"order_id": 42})

    tools, (text, ok) = asyncio.run(session())
    names = {t["name"] for t in tools}
    assert "cancel_pending_order" in names and "get_order_details" in names
    schema = next(t for t in tools if t["name"] == "cancel_pending_order")["input_schema"]
    assert schema["type"] == "object" and "order_id" in schema["properties"]
    assert not ok and "must be a string" in text


def test_an_agent_calls_tools_through_mcp_and_the_env_scores_the_world_it_changed(tmp_path: Path) -> None:
    summary = run_sync(
        RunConfig(
            env_id="workspace-v0",
            agents=["mcp:workspace_gold"],
            episodes=1,
            env_options={"task": "incidents-1"},
        ),
        tmp_path,
    )
    assert summary.statuses.get("ok") == 1
    episode = json.loads((tmp_path / "episodes.jsonl").read_text().splitlines()[0])
    assert episode["info"]["score"] == 1.0
    assert episode["info"]["tool_calls_via_mcp"] == episode["info"]["tool_calls"] > 0
    # Every env turn was text: the tools were called over MCP, not through the env.
    assert all(isinstance(turn["action"], str) for turn in episode["turns"])


def test_tool_calls_are_read_from_messages_and_text() -> None:
    text = '<tool_call>{"name": "list_mail", "arguments": {"folder": "sent"}}</tool_call>'
    assert [(c.name, c.arguments) for c in tool_calls_of(text)] == [("list_mail", {"folder": "sent"})]
    assert tool_calls_of(Message(role="assistant", content="hello")) == []


def test_mcp_cli_lists_and_refuses_unknown_targets() -> None:
    cli = typer.Typer()
    cli.command("noop")(lambda: None)
    workspace_cmds.register(cli)
    listed = CliRunner().invoke(cli, ["mcp", "tools", "workspace:status-1"])
    assert listed.exit_code == 0 and "create_pdf" in listed.output and "find_free_slots" in listed.output
    unknown = CliRunner().invoke(cli, ["mcp", "tools", "workspace:nope-9"])
    assert unknown.exit_code == 2 and "no workspace task 'nope-9'" in unknown.output
