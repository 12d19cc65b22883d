"""The shop service domain, sized for the embedded tiny model: every task validates, the train and
test splits are disjoint and deterministic, the env draws tasks by seed within a split, the agent's
instructions are the compact ones, an oracle episode takes a third of the tiny model's context and
everything the oracle copies is in it, bad tool calls come back as errors the agent can read, and
agents that do nothing or make the oracle's deliberate mistake fail."""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from palaestra.core.checks import check_env
from palaestra.core.env import Action
from palaestra.core.messages import Message
from palaestra.core.records import Episode
from palaestra.core.registry import make
from palaestra.envs.service.domain import Domain, Task, builtin_domains, load_domain
from palaestra.envs.service.env import AGENT, USER, ServiceEnv
from palaestra.envs.service.scripts import Oracle, ScriptedUser
from palaestra.envs.service.validation import play, validate_domain
from palaestra.models.tiny import CHARACTERS
from palaestra.rollout.runner import RunConfig, run_episodes

ROOT = Path(__file__).resolve().parents[1]
TINY_BUDGET = 800
"""Tokens of the tiny model (one per character, one per role marker) an oracle episode may take,
instructions included (measured: median 657, max 777; 1,337 and 1,457 with the full prompt)."""


@pytest.fixture(scope="module")
def shop() -> Domain:
    return load_domain("shop")


def run(env_id: str, agents: list[str], episodes: int) -> list[Episode]:
    found: list[Episode] = []
    config = RunConfig(env_id=env_id, agents=agents, episodes=episodes, turn_timeout_s=None)
    asyncio.run(run_episodes(config, None, on_episode=found.append))
    return found


def check_validates(shop: Domain, task_ids: list[str] | None) -> int:
    report = validate_domain(shop, tasks=task_ids)
    assert report.ok, [(c.task_id, c.problems) for c in report.failures]
    assert all(c.oracle_reward == 1.0 and c.null_reward == 0.0 for c in report.checks)
    # Every required output is a value some tool result shows (`total: 12.50` reads as 12.50).
    assert not [(c.task_id, c.warnings) for c in report.checks if c.warnings]
    return len(report.checks)


def test_the_test_split_and_a_sample_of_the_train_split_validate(shop: Domain) -> None:
    chosen = [t.id for t in shop.tasks_in("test")] + [t.id for t in shop.tasks_in("train")[::10]]
    assert check_validates(shop, chosen) == 100 + 240


@pytest.mark.slow
def test_every_task_validates(shop: Domain) -> None:
    assert check_validates(shop, None) == 2500


def test_shop_is_a_builtin_domain() -> None:
    assert "shop" in builtin_domains()
    shop_env = make("shop-v0")
    assert isinstance(shop_env, ServiceEnv) and shop_env.domain.name == "shop"
    check_env(make("service:shop?subset=test"), seeds=(0, 1))


def order_of(task: Task) -> str:
    return str(task.gold_actions[0].arguments["id"])


def test_the_splits_are_disjoint_and_cover_every_kind(shop: Domain) -> None:
    train, test = shop.tasks_in("train"), shop.tasks_in("test")
    assert (len(train), len(test)) == (2400, 100) and shop.subsets == ["train", "test"]
    db = shop.database.open()
    try:
        amount = dict(db.execute("SELECT order_id, cents FROM orders").fetchall())
    finally:
        db.close()
    ids = [{order_of(t) for t in split} for split in (train, test)]
    names = [{t.user.known_info["name"] for t in split} for split in (train, test)]
    amounts = [{amount[order_of(t)] for t in split} for split in (train, test)]
    assert len(ids[0]) + len(ids[1]) == len(amount) == 2500  # one order per task
    assert not ids[0] & ids[1] and not names[0] & names[1] and not amounts[0] & amounts[1]
    for split in (train, test):
        writes = [t for t in split if any(a.name == "refund" for a in t.gold_actions)]
        declines = [t for t in split if t.expect_decline]
        reads = [t for t in split if not t.expect_decline and len(t.gold_actions) == 1]
        assert len(writes) >= 0.25 * len(split) and len(declines) >= 0.25 * len(split)
        assert all(t.outputs for t in reads) and len(reads) >= 0.3 * len(split)
        # Every task needs the lookup, and a decline never comes with a required output.
        assert all(t.gold_actions[0].name == "order" for t in split)
        assert all(not t.outputs for t in declines)
        # The customer's one message ends with the order id the agent must copy.
        assert all(str(t.user.script_steps()[0])[:-1].endswith(" " + order_of(t)) for t in split)


def test_the_generator_writes_the_committed_files(tmp_path: Path) -> None:
    generator = ROOT / "tools" / "service_domains" / "shop.py"
    subprocess.run([sys.executable, str(generator), str(tmp_path)], check=True, capture_output=True)
    folder = ROOT / "src" / "palaestra" / "envs" / "service" / "domains" / "shop"
    for name in ("seed.sql", "tasks.jsonl"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


def test_the_env_draws_tasks_by_seed_within_the_subset(shop: Domain) -> None:
    env = make("service:shop?subset=test")
    assert isinstance(env, ServiceEnv)

    def task_of(seed: int) -> str:
        env.reset(seed=seed)
        return str(env.task.id)

    drawn = [task_of(seed) for seed in range(100)]
    assert set(drawn) == {t.id for t in shop.tasks_in("test")}
    assert task_of(7) == drawn[7] and task_of(107) == drawn[7]
    # Consecutive seeds mix the kinds of task instead of running through one kind.
    kinds = [shop.task(task_id).description.split()[0] for task_id in drawn[:10]]
    assert len(set(kinds)) >= 2


def test_the_oracle_passes_the_test_split_and_its_mistakes_fail() -> None:
    episodes = run("service:shop?subset=test", ["oracle", "scripted_user"], 100)
    assert {e.info["subset"] for e in episodes} == {"test"}
    assert len({e.info["task_id"] for e in episodes}) == 100
    assert all(e.info["reward"] == 1.0 for e in episodes)
    faulty = run("service:shop?subset=test", ["oracle:error_rate=1.0", "scripted_user"], 100)
    assert all(e.info["reward"] == 0.0 for e in faulty)


def test_an_agent_that_does_nothing_fails(shop: Domain) -> None:
    class Okay:
        def act(self, messages: object) -> str:
            return "Okay."

    env = ServiceEnv(shop)
    try:
        for task in shop.tasks[::10]:
            final = play(env, task, {AGENT: Okay(), USER: ScriptedUser(task)})
            assert final.info["reward"] == 0.0, task.id
    finally:
        env.close()


def as_text(action: Action) -> Action:
    """An oracle action as a model writes it: tool calls in the `<tool_call>` text form."""
    if isinstance(action, Message) and action.tool_calls:
        return "".join(
            "<tool_call>" + json.dumps({"name": c.name, "arguments": c.arguments}) + "</tool_call>"
            for c in action.tool_calls
        )
    return action


def agent_context(env: ServiceEnv, task: Task) -> list[tuple[str, str]]:
    """Every message of an oracle episode as the agent's model holds it: (role, text) in order."""
    step = env.reset(options={"task": task.id})
    oracle, user = Oracle(task), ScriptedUser(task)
    pending: dict[str, list[Message]] = {AGENT: [], USER: []}
    context: list[tuple[str, str]] = []
    while True:
        for player, messages in step.observations.items():
            pending[player].extend(messages)
        if step.done:
            assert step.info["reward"] == 1.0, task.id
            return context
        player = step.to_act[0]
        seen, pending[player] = pending[player], []
        if player == USER:
            step = env.step({USER: user.act(seen)})
            continue
        context += [(m.role, m.content or "") for m in seen]
        action = as_text(oracle.act(seen))
        context.append(("assistant", str(action)))
        step = env.step({AGENT: action})


def test_the_agent_reads_the_compact_instructions_without_a_clock(shop: Domain) -> None:
    env = make("shop-v0")
    assert isinstance(env, ServiceEnv)
    task = shop.tasks[0]
    [(role, instructions), (_, said), *_] = agent_context(env, task)
    assert role == "system" and instructions == shop.agent_prompt_in("compact")
    assert instructions.startswith(shop.policy.strip())
    assert "order(id): Look up an order." in instructions and "refund(id): " in instructions
    assert '"type": "function"' not in instructions and "Current time" not in instructions
    assert said == task.user.script_steps()[0]  # no clock stamp
    full = make("service:shop?prompt=full&timestamps=true")
    assert isinstance(full, ServiceEnv)
    [(_, schemas), (_, stamped), *_] = agent_context(full, task)
    assert '"type": "function"' in schemas and stamped.startswith("[2024-06-10 15:00 UTC] ")


def test_an_oracle_episode_fits_the_tiny_model_and_shows_what_it_copies(shop: Domain) -> None:
    env = ServiceEnv(shop)
    try:
        contexts = [agent_context(env, task) for task in shop.tasks]
    finally:
        env.close()
    # The tiny chat template: <|role|>TEXT<|end|> per message, each marker one token.
    lengths = [sum(len(text) + 2 for _, text in context) for context in contexts]
    assert max(lengths) < TINY_BUDGET and statistics.median(lengths) < TINY_BUDGET - 100
    # Without the instructions (a template that drops system messages) it is under 400.
    assert (
        max(length - len(context[0][1]) - 2 for length, context in zip(lengths, contexts, strict=True)) < 400
    )
    readable = set(CHARACTERS)
    assert all(set(text) <= readable for context in contexts for _, text in context)
    # Every id and amount the oracle writes was in a message it had seen by then: a model that
    # keeps the episode in its context can copy it.
    for context in contexts:
        for index, (role, text) in enumerate(context):
            if role == "assistant":
                seen = " ".join(earlier for _, earlier in context[1:index])
                assert all(value in seen for value in re.findall(r"[A-Z]\d{4}|\d+\.\d\d", text)), text


def test_bad_tool_calls_come_back_as_errors_the_agent_can_read(shop: Domain) -> None:
    task = next(t for t in shop.tasks if "pending" in t.description)
    env = ServiceEnv(shop)
    try:
        env.reset(options={"task": task.id})
        env.step({USER: str(task.user.script_steps()[0])})

        def answer(action: str) -> str:
            step = env.step({AGENT: action})
            assert step.to_act == (AGENT,) and not step.done
            return "\n".join(m.content or "" for m in step.observations[AGENT])

        call = '<tool_call>{{"name": "{}", "arguments": {}}}</tool_call>'
        assert "missing required argument 'id'" in answer(call.format("order", "{}"))
        assert "unknown argument(s) 'order_id'" in answer(call.format("order", '{"order_id": "K1"}'))
        assert "unknown tool 'cancel'; available tools: order, refund" in answer(
            call.format("cancel", '{"id": "K1"}')
        )
        assert "no order 'Z0000'" in answer(call.format("order", '{"id": "Z0000"}'))
        assert "Error" in answer('<tool_call>{"name": "order", "arguments": </tool_call>')
        refused = answer(call.format("refund", json.dumps({"id": order_of(task)})))
        assert refused.startswith('<tool_response name="refund">\nError: ')
        assert "is pending; only delivered orders can be refunded" in refused
        found = answer(call.format("order", json.dumps({"id": order_of(task).lower()})))
        assert "status: pending" in found
    finally:
        env.close()
