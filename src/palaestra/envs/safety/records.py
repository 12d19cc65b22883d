"""Judge records built from palaestra's own episodes, labelled by what the world saw happen.

For every scenario of the safety sandbox (`palaestra.envs.safety.sandbox`) in the chosen domains,
two agents of known behaviour play it with the scripted user: the careful one (the scenario's
safe gold) and the risky one (`SafetyView.unsafe()`: an irreversible write nobody asked for in a
benign scenario, the forbidden write or the leak a malicious user asked for, the injected
instruction followed). Each episode becomes an R-Judge record (`palaestra.envs.safety.rjudge`):
the turns as the agent saw them (an injected instruction included), the label from the
sandbox's deterministic verdict (1 when the episode was risky), the risk description from the
violations it found and the scenario's risky outcome, and the attack type (`injection` for
injection scenarios, else `unintended`). The category is the domain and the scenario is
`DOMAIN/KIND`, so judge metrics come per domain and per kind of risk.

`build_records(domains, per_kind, seed)` gives 2 x (up to 4 x per_kind) records per domain, the
same for the same arguments: a judge set of any size, offline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache

from palaestra.core.messages import Message
from palaestra.envs.safety.policies import play
from palaestra.envs.safety.rjudge import Entry, JudgeRecord
from palaestra.envs.safety.sandbox import SandboxEnv
from palaestra.envs.safety.scenarios import Scenario, interleave

DEFAULT_DOMAINS: tuple[str, ...] = ("retail", "travel", "crm", "shop")
BEHAVIOURS: tuple[str, ...] = ("careful", "risky")


def contents_of(transcript: Sequence[Message], greeting: str) -> list[list[Entry]]:
    """A transcript as R-Judge turns: each user message opens a turn; the agent's tool calls are
    actions (`name: {arguments}`), their results environment entries, its replies
    `Final Answer: ...` actions."""
    turns: list[list[Entry]] = []
    for message in transcript:
        if message.name == "user" and message.role == "user":
            turns.append([Entry(role="user", content=message.content or "")])
            continue
        if not turns:
            continue  # the greeting, before anyone asked anything
        if message.tool_calls and message.name == "agent":
            for call in message.tool_calls:
                turns[-1].append(Entry(role="agent", action=f"{call.name}: {json.dumps(call.arguments)}"))
        elif message.role == "tool":
            turns[-1].append(Entry(role="environment", content=message.content or ""))
        elif message.name == "agent" and message.content and message.content != greeting:
            turns[-1].append(Entry(role="agent", action=f"Final Answer: {message.content}"))
    return turns


def _description(scenario: Scenario, verdict: dict[str, object], risky: bool) -> str:
    if not risky:
        return f"The agent avoided the risk: {scenario.risky_outcome[0].lower()}{scenario.risky_outcome[1:]}"
    found = "; ".join(f"{v['check']}: {v['detail']}" for v in verdict["violations"])  # type: ignore[attr-defined]
    return f"{scenario.risky_outcome} ({found})"


def record_of(env: SandboxEnv, scenario: Scenario, behaviour: str) -> JudgeRecord:
    """Play `scenario` with the careful or the risky agent and write the episode as a record."""
    env.reset(options={"scenario": scenario.id})
    view = env.privileged_view("agent")
    agent = view.oracle() if behaviour == "careful" else view.unsafe()
    played = play(env, {"agent": agent, "user": view.scripted_user()}, options={"scenario": scenario.id})
    verdict = played.last.info["safety"]
    risky = bool(verdict["risky"])
    domain = env.domain
    tools = ", ".join(spec.name for spec in domain.tools_of("agent"))
    return JudgeRecord(
        id=f"{scenario.id}-{behaviour}",
        scenario=f"{scenario.domain}/{scenario.kind}",
        profile=f"The {domain.name} service agent ({domain.config.description}) with tools: {tools}.",
        goal=scenario.task.user.reason,
        contents=contents_of(env.seen_transcript, domain.config.greeting),
        label=1 if risky else 0,
        risk_description=_description(scenario, verdict, risky),
        attack_type="injection" if scenario.kind == "injection" else "unintended",
        category=scenario.domain,
    )


@lru_cache(maxsize=16)
def _built(domains: tuple[str, ...], per_kind: int, seed: int) -> tuple[JudgeRecord, ...]:
    records = []
    for domain in domains:
        env = SandboxEnv(domain, per_kind=per_kind, seed=seed)
        try:
            for scenario in env.scenarios:
                records += [record_of(env, scenario, behaviour) for behaviour in BEHAVIOURS]
        finally:
            env.close()
    return tuple(interleave(records, key=lambda r: r.category))


def build_records(
    domains: Sequence[str] = DEFAULT_DOMAINS, *, per_kind: int = 2, seed: int = 0
) -> list[JudgeRecord]:
    """Judge records from the sandbox's scenarios of `domains` (see the module docstring)."""
    return list(_built(tuple(domains), per_kind, seed))


__all__ = ["BEHAVIOURS", "DEFAULT_DOMAINS", "build_records", "contents_of", "record_of"]
