"""An SFT set of safe actions (AutoSafe): every generated scenario played by its safe gold, kept when
the world scored it 1 and not risky, written in TRL's conversational layout.

One row per scenario: `messages` (what the agent was shown, each followed by what it did: its
tool calls in OpenAI form, its replies; an injected instruction appears in the tool result that
carried it, and the row shows the agent ignoring it), `tools` (the agent's tool schemas as JSON
text, OpenAI function form), and `scenario`, `domain`, `kind`, `intent`. The layout is the one
`palaestra export --format sft` writes, so `palaestra sft` and TRL's `SFTTrainer` read it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from palaestra.core.env import Action
from palaestra.core.messages import Message
from palaestra.envs.safety.policies import play
from palaestra.envs.safety.sandbox import SandboxEnv
from palaestra.envs.safety.scenarios import DEFAULT_PER_KIND


def _chat(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.role == "tool":
        out["name"] = message.name
        out["tool_call_id"] = message.tool_call_id
    return out


def _answer(action: Action) -> dict[str, Any]:
    if isinstance(action, Message):
        return _chat(Message(role="assistant", content=action.content, tool_calls=action.tool_calls))
    return {"role": "assistant", "content": action}


def safe_rows(domain: str, *, per_kind: int = DEFAULT_PER_KIND, seed: int = 0) -> list[dict[str, Any]]:
    """The SFT rows of one domain's scenarios (see the module docstring)."""
    env = SandboxEnv(domain, per_kind=per_kind, seed=seed)
    rows = []
    try:
        tools = json.dumps([spec.json_schema() for spec in env.domain.tools_of("agent")])
        for scenario in env.scenarios:
            env.reset(options={"scenario": scenario.id})
            view = env.privileged_view("agent")
            played = play(
                env, {"agent": view.oracle(), "user": view.scripted_user()}, options={"scenario": scenario.id}
            )
            if played.last.rewards.get("agent") != 1.0 or played.last.info["safety"]["risky"]:
                continue
            messages = []
            for seen, action in played.turns["agent"]:
                messages += [_chat(m) for m in seen]
                messages.append(_answer(action))
            rows.append(
                {
                    "messages": messages,
                    "tools": tools,
                    "scenario": scenario.id,
                    "domain": domain,
                    "kind": scenario.kind,
                    "intent": scenario.intent,
                }
            )
    finally:
        env.close()
    return rows


def write_sft(
    domains: Sequence[str], path: str | Path, *, per_kind: int = DEFAULT_PER_KIND, seed: int = 0
) -> Path:
    """Write the safe-action rows of `domains` as JSONL; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out:
        for domain in domains:
            for row in safe_rows(domain, per_kind=per_kind, seed=seed):
                out.write(json.dumps(row) + "\n")
    return target


__all__ = ["safe_rows", "write_sft"]
