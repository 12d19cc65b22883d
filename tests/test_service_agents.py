"""Service agents through the real runner: the oracle scores pass^1 = 1.0 on every domain, a
random-tool agent about 0, a deliberately faulty oracle shows pass^k falling with k, `llm:tiny`
runs end to end in either seat, and its episodes become training trajectories (customer and tool
tokens are prompt tokens, masked out; the reward lands on the agent's last turn)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from palaestra.agents.base import AgentError, agent_factory
from palaestra.core.records import Episode
from palaestra.envs.service.domain import load_domain
from palaestra.eval.service_metrics import collect, pass_k_curve, summarize
from palaestra.rollout.runner import RunConfig, run_episodes


def run(
    env_id: str, agents: list[str], episodes: int, trials: int = 1, **env_options: object
) -> list[Episode]:
    found: list[Episode] = []
    config = RunConfig(
        env_id=env_id,
        env_options=dict(env_options),
        agents=agents,
        episodes=episodes * trials,
        group_size=trials,
        turn_timeout_s=None,
    )
    asyncio.run(run_episodes(config, None, on_episode=found.append))
    assert len(found) == episodes * trials
    return found


@pytest.mark.parametrize("domain", ["retail", "travel", "crm"])
def test_the_oracle_passes_every_task(domain: str) -> None:
    count = len(load_domain(domain).tasks)
    episodes = run(f"{domain}-v0", ["oracle", "scripted_user"], count)
    assert {e.status for e in episodes} == {"ok"}
    assert {e.info["task_id"] for e in episodes} == {t.id for t in load_domain(domain).tasks}
    results = collect(episodes)
    curve = pass_k_curve(list(results.tasks.values()), 1)
    assert curve == [(1, 1.0, count)]
    # The reward is the agent seat's step reward, and its last turn carries it.
    for episode in episodes:
        assert episode.returns == {"agent": 1.0, "user": 0.0}
        assert episode.player_turns("agent")[-1].reward == 1.0


def test_random_tools_score_about_zero() -> None:
    rewards = []
    for domain in ("retail", "travel", "crm"):
        count = len(load_domain(domain).tasks)
        episodes = run(f"{domain}-v0", ["random_tool", "scripted_user"], count)
        rewards += [e.info["reward"] for e in episodes if e.status == "ok"]
        assert any(e.info["tool_errors"] for e in episodes)
    assert len(rewards) >= 80 and sum(rewards) / len(rewards) <= 0.05


def test_a_faulty_oracle_has_pass_k_falling_with_k() -> None:
    episodes = run("retail-v0", ["oracle:error_rate=0.4", "scripted_user"], 35, trials=4)
    curve = [value for _, value, _ in pass_k_curve(list(collect(episodes).tasks.values()), 4)]
    assert 0.3 < curve[0] < 0.9
    assert curve == sorted(curve, reverse=True) and curve[3] < curve[0]
    sections = summarize(episodes)
    assert [s.title for s in sections] == [
        "pass^k by domain",
        "pass^k by subset",
        "service failures by reason",
    ]
    assert sections[0].rows[0][:3] == ["retail", "35", "4"]
    assert sections[0].rows[0][4] == f"{curve[0]:.3f}"


def test_service_agents_refuse_other_envs() -> None:
    (episode,) = run("tic_tac_toe-v0", ["oracle", "random"], 1)
    assert episode.status == "error" and "oracle plays service envs only" in (episode.cause or "")
    with pytest.raises(AgentError, match="error_rate must be between 0 and 1"):
        agent_factory("oracle:error_rate=2")


def test_scripted_user_follows_the_script_and_calls_its_own_tools() -> None:
    (episode,) = run("service:retail?task=retail-011", ["oracle", "scripted_user"], 1)
    user_turns = episode.player_turns("user")
    actions = [t.action for t in user_turns]
    assert actions[0] == "Hi, I moved and need to update my default address."
    tool_turn = next(t for t in user_turns if not isinstance(t.action, str))
    assert tool_turn.action.tool_calls[0].name == "check_inbox"  # type: ignore[union-attr]
    said = next(a for a in actions if isinstance(a, str) and a.startswith("I got the email"))
    assert "Your verification code is" in said
    assert actions[-1] == "###STOP###" and episode.info["reward"] == 1.0


# ----- the embedded tiny model -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if importlib.util.find_spec("palaestra.models.local") is None:
        pytest.skip("the local engine is not in this tree")
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("palaestra-cache")
    previous = os.environ.get("PALAESTRA_CACHE")
    os.environ["PALAESTRA_CACHE"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["PALAESTRA_CACHE"]
    else:
        os.environ["PALAESTRA_CACHE"] = previous


def run_tiny(env_id: str, agents: list[str], episodes: int) -> list[Episode]:
    from palaestra.models.registry import close_models, forget_models

    forget_models()
    found: list[Episode] = []

    async def main() -> None:
        config = RunConfig(env_id=env_id, agents=agents, episodes=episodes, turn_timeout_s=None)
        try:
            await run_episodes(config, None, on_episode=found.append)
        finally:
            await close_models()

    asyncio.run(main())
    forget_models()
    return found


def test_llm_tiny_serves_customers_and_its_episodes_train(tiny_cache: Path) -> None:
    from palaestra.train.rewards import RewardConfig, trajectories_from_episodes

    spec = "llm:tiny?max_new_tokens=24"
    episodes = run_tiny("service:retail?max_steps=12", [spec, "scripted_user"], 2)
    assert [e.status for e in episodes] == ["ok", "ok"], [e.cause for e in episodes]
    for episode in episodes:
        assert episode.info["termination"] in ("user_stop", "max_steps", "too_many_errors")
        assert 0.0 <= episode.info["reward"] <= 1.0
    # Shaping off: the trajectory's rewards are the env's own (0 until the last turn).
    config = RewardConfig(use_valid_action_bonus=False, use_draw_bonus=False)
    batch = trajectories_from_episodes(episodes, config=config)
    assert len(batch) == 2 and {t.role for t in batch} == {"agent"}  # the scripted customer has no tokens
    for trajectory, episode in zip(batch, episodes, strict=True):
        assert trajectory.turn_rewards[-1] == episode.returns["agent"] == episode.info["reward"]
        assert all(r == 0.0 for r in trajectory.turn_rewards[:-1])
        turns = episode.player_turns("agent")
        rows = trajectory.token_rows()
        # The compact template starts a fresh context every turn: one row per turn.
        assert len(rows) == len(turns)
        for row, turn in zip(rows, turns, strict=True):
            generation = turn.generation
            assert generation is not None
            sampled = len(generation.token_ids)
            assert row.loss_mask == [0] * len(generation.prompt_ids) + [1] * sampled
            assert row.input_ids[len(generation.prompt_ids) :] == generation.token_ids
    # What the customer and the tools said reached the model as prompt tokens (mask 0).
    from transformers import AutoTokenizer

    from palaestra.models.tiny import default_tiny_path

    tokenizer = AutoTokenizer.from_pretrained(default_tiny_path())
    first = episodes[0].player_turns("agent")[0]
    assert first.generation is not None
    prompt = tokenizer.decode(first.generation.prompt_ids)
    customer = episodes[0].player_turns("user")[0].action
    assert isinstance(customer, str) and customer in prompt


def test_llm_tiny_can_play_the_customer(tiny_cache: Path) -> None:
    (episode,) = run_tiny("service:crm?max_steps=8", ["oracle", "llm:tiny?max_new_tokens=16"], 1)
    assert episode.status == "ok", episode.cause
    assert episode.info["termination"] in (
        "max_steps",
        "user_stop",
        "user_errors",
        "transfer",
        "out_of_scope",
    )
    user_turns = episode.player_turns("user")
    assert user_turns and all(t.generation is not None for t in user_turns)
    brief = user_turns[0].observation[0]
    assert brief.role == "system" and "Helios" in (brief.content or "")


def test_a_successful_text_protocol_episode_becomes_a_rewarded_trajectory() -> None:
    """An `LLMAgent` on a scripted mock model replays retail-001's gold actions as text tool calls."""
    from palaestra.agents.llm import LLMAgent
    from palaestra.models.mock import MockModel, decode_ids
    from palaestra.train.rewards import RewardConfig, trajectories_from_episodes

    calls = [
        ("find_user_id_by_email", '{"email": "maria.lopez@example.com"}'),
        ("get_order_details", '{"order_id": "#W4810293"}'),
        ("cancel_pending_order", '{"order_id": "#W4810293", "reason": "ordered by mistake"}'),
    ]
    replies = [
        f'<tool_call>{{"name": "{name}", "arguments": {arguments}}}</tool_call>' for name, arguments in calls
    ]
    replies += ["Your order is cancelled; 154.99 goes back to your card."] * 10
    model = MockModel(replies)
    found: list[Episode] = []
    config = RunConfig(
        env_id="service:retail?task=retail-001",
        agents=["mock-agent", "scripted_user"],
        episodes=1,
        turn_timeout_s=None,
    )
    factories = {"mock-agent": lambda: LLMAgent(model, template="mars")}
    asyncio.run(run_episodes(config, None, factories=factories, on_episode=found.append))
    (episode,) = found
    assert episode.status == "ok" and episode.info["reward"] == 1.0, episode.info
    batch = trajectories_from_episodes(
        found, config=RewardConfig(use_valid_action_bonus=False, use_draw_bonus=False)
    )
    (trajectory,) = batch.trajectories
    turns = episode.player_turns("agent")
    assert trajectory.turn_rewards == [0.0] * (len(turns) - 1) + [1.0]
    (row,) = trajectory.token_rows()  # one model session for the whole episode
    sampled = [i for turn in turns for i in turn.generation.token_ids]  # type: ignore[union-attr]
    assert [i for i, m in zip(row.input_ids, row.loss_mask, strict=True) if m == 1] == sampled
    # The tool results and customer messages are in the row, as prompt tokens only.
    masked_text = decode_ids([i for i, m in zip(row.input_ids, row.loss_mask, strict=True) if m == 0])
    assert '<tool_response name="find_user_id_by_email">\nmaria_lopez_1042' in masked_text
    assert "My email is maria.lopez@example.com" in masked_text
