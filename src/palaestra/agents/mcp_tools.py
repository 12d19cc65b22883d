"""palaestra agents calling tools through an MCP client (the official `mcp` SDK's stdio client).

- `McpToolClient`: an async context manager that starts an MCP server as a subprocess, opens a
  `ClientSession` over stdio, and lists and calls its tools (`list_tools()`, `call(name, args)`).
- `McpAgent` (agent spec `mcp:INNER`, e.g. `mcp:workspace_gold` or `mcp:llm:openai:M@URL`): wraps
  any agent. When the inner agent answers with tool calls, they go to the MCP server the env's
  privileged view names (`mcp_server`: `{command, args}`, e.g. a workspace episode's sandbox
  served by `palaestra.envs.workspace.mcp_server`) instead of to the env, and the results go back
  to the inner agent; its first text answer is what the env receives. The world changes through
  MCP, and the env sees those calls in the sandbox's tool log.

One MCP session is opened per `act` call (the SDK's stdio transport runs in a task group, which
must be entered and left in the same task), so a stage's calls share one server process.
The SDK loads on first use (`pip install 'palaestra[workspace]'`).
"""

from __future__ import annotations

import json
import os
import re
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

from palaestra.agents.base import (
    Agent,
    AgentError,
    AgentFactory,
    AgentView,
    Decision,
    agent_factory,
    register_agent,
)
from palaestra.core.env import Action
from palaestra.core.messages import Message, ToolCall

_TEXT_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
MAX_ROUNDS = 64


class McpToolClient:
    """A session with an MCP server started as `command args...` (stdio).

    Use as `async with McpToolClient(command, args) as client: await client.list_tools()`.
    """

    def __init__(
        self, command: str, args: list[str] | tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> None:
        self.command = command
        self.args = list(args)
        self.env = env
        self._stack: AsyncExitStack | None = None
        self.session: Any = None

    async def __aenter__(self) -> McpToolClient:
        try:
            from mcp import ClientSession, StdioServerParameters  # noqa: PLC0415 - the SDK is an optional extra
            from mcp.client.stdio import get_default_environment, stdio_client  # noqa: PLC0415
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                "MCP needs the mcp SDK: pip install 'palaestra[workspace]'", name=exc.name
            ) from exc
        environment = {**get_default_environment(), **(self.env or {})}
        params = StdioServerParameters(command=self.command, args=self.args, env=environment)
        self._stack = AsyncExitStack()
        try:
            errlog = self._stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115 - closed by the stack
            read, write = await self._stack.enter_async_context(stdio_client(params, errlog=errlog))
            self.session = await self._stack.enter_async_context(ClientSession(read, write))
            await self.session.initialize()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def list_tools(self) -> list[dict[str, Any]]:
        """The server's tools: `{name, description, input_schema}` each."""
        listed = await self.session.list_tools()
        return [
            {"name": tool.name, "description": tool.description or "", "input_schema": tool.inputSchema}
            for tool in listed.tools
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """Call a tool: its text answer, and whether it succeeded."""
        result = await self.session.call_tool(name, arguments)
        text = "\n".join(getattr(block, "text", "") for block in result.content)
        return text, not result.isError


def tool_calls_of(action: Action) -> list[ToolCall]:
    """The tool calls an action makes: a message's `tool_calls`, or `<tool_call>{json}</tool_call>` text."""
    if isinstance(action, Message):
        if action.tool_calls:
            return list(action.tool_calls)
        action = action.content or ""
    calls = []
    for number, block in enumerate(_TEXT_CALL.findall(action)):
        try:
            decoded = json.loads(block.strip())
        except ValueError:
            decoded = {}
        name = decoded.get("name") if isinstance(decoded, dict) else None
        arguments = decoded.get("arguments", {}) if isinstance(decoded, dict) else {}
        calls.append(
            ToolCall(f"mcp_text_{number}", str(name or ""), arguments if isinstance(arguments, dict) else {})
        )
    return calls


class McpAgent:
    """Runs an inner agent whose tool calls go over MCP (see the module docstring).

    Args:
        inner: a factory of the inner agent.
        max_rounds: the most tool rounds in one env turn before it gives up with a note.
    """

    def __init__(self, inner: AgentFactory, max_rounds: int = MAX_ROUNDS) -> None:
        self.inner: Agent = inner()
        self.max_rounds = max_rounds
        self.calls = 0

    async def act(self, view: AgentView) -> Action | Decision:
        server = getattr(view.privileged, "mcp_server", None)
        if not isinstance(server, dict) or "command" not in server:
            raise AgentError(
                f"mcp agents need an env whose privileged view names an MCP server; {view.player} has none"
            )
        async with McpToolClient(str(server["command"]), list(server.get("args", []))) as client:
            current = view
            for round_number in range(self.max_rounds):
                answer = await self.inner.act(current)
                action = answer.action if isinstance(answer, Decision) else answer
                calls = tool_calls_of(action)
                if not calls:
                    return answer
                results = []
                for call in calls:
                    self.calls += 1
                    text, ok = await client.call(call.name, call.arguments)
                    results.append(
                        Message(
                            role="tool",
                            content=text if ok or text.startswith("Error") else f"Error: {text}",
                            name=call.name,
                            tool_call_id=call.id or f"mcp_{self.calls}",
                            time=view.time,
                        )
                    )
                current = replace(
                    current, messages=results, turn=current.turn + 1, step=view.step + round_number + 1
                )
        return "(stopped: too many tool rounds in one turn)"

    async def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result


@register_agent("mcp", "mcp:AGENT, any agent whose tool calls go to the env's MCP server (workspace worlds)")
def mcp_agent(arg: str = "") -> AgentFactory:
    if not arg:
        raise AgentError("mcp needs the inner agent after the colon, e.g. mcp:workspace_gold")
    inner = agent_factory(arg)
    return lambda: McpAgent(inner)


__all__ = ["McpAgent", "McpToolClient", "mcp_agent", "tool_calls_of"]
