"""LLMAgent, the `llm:` spec, the mock model and the model registry.

Token bookkeeping is checked against `MockModel.context`, which is what the model itself saw:
a player's training row (its turns' prompt deltas and sampled ids, in order) must be exactly that
context, with the loss mask on the sampled ids only.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import palaestra.envs  # noqa: F401  (registers the games)
from palaestra.agents.base import AgentError, AgentView, Decision, agent_factory
from palaestra.agents.llm import (
    CompactTemplate,
    LLMAgent,
    MarsTemplate,
    llm_agent,
    parse_llm_spec,
    strip_end_markers,
    template_for_model,
)
from palaestra.core.messages import Message, system, user
from palaestra.core.records import Episode, Turn
from palaestra.core.registry import make
from palaestra.models.base import GenerationRequest, ModelError, SamplingParams
from palaestra.models.mock import END_ID, ROLE_IDS, MockModel, decode_ids, encode_text, legal_actions_in
from palaestra.models.registry import (
    forget_models,
    parse_model_spec,
    resolve_model,
    split_openai_target,
)
from palaestra.rollout.episode import play_episode

X_DRAW = ["1", "3", "4", "8", "9"]
O_DRAW = ["2", "5", "6", "7"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def play(
    agents: dict[str, Any],
    *,
    env_options: dict[str, Any] | None = None,
    episode_id: str = "ep",
    seed: int = 0,
) -> Episode:
    env = make("tic_tac_toe-v0", **(env_options or {}))
    return await play_episode(
        env,
        agents,
        episode_id=episode_id,
        seed=seed,
        env_id="tic_tac_toe-v0",
        agent_specs={player: "llm:mock" for player in agents},
    )


def scripted_by_seat(scripts: dict[str, list[str]]) -> Any:
    """A reply function giving each seat (session suffix) its own script, in order."""
    counts: dict[str, int] = {}

    def reply(request: GenerationRequest) -> str:
        assert request.session is not None
        seat = request.session.rsplit("/", 1)[1]
        index = counts.get(request.session, 0)
        counts[request.session] = index + 1
        return scripts[seat][index]

    return reply


def training_row(turns: list[Turn]) -> tuple[list[int], list[int]]:
    """One player's trainer input: prompt deltas (mask 0) and sampled ids (their loss mask), in order."""
    ids: list[int] = []
    mask: list[int] = []
    for turn in turns:
        generation = turn.generation
        assert generation is not None
        ids += generation.prompt_ids
        mask += [0] * len(generation.prompt_ids)
        ids += generation.token_ids
        assert generation.loss_mask is not None
        mask += generation.loss_mask
    return ids, mask


def view_of(messages: list[Message], legal: list[str] | None = None, **fields: Any) -> AgentView:
    defaults: dict[str, Any] = {"player": "player_0", "turn": 0, "step": 0, "episode_id": "e", "seed": 5}
    return AgentView(messages=messages, legal_actions=legal, **{**defaults, **fields})


# ----- the 5-turn token-exact replay ------------------------------------------------------------
def test_five_turn_episode_rows_are_exactly_what_the_model_saw() -> None:
    x_replies = [
        "<think>corner</think><answer>1</answer>",
        "<answer> 3 </answer>",
        "I pick <answer>4</answer>",
        "<answer>8</answer>",
        "<answer>9</answer>",
    ]
    o_replies = [f"<answer>{move}</answer>" for move in O_DRAW]
    model = MockModel(scripted_by_seat({"player_0": x_replies, "player_1": o_replies}))
    agents = {"player_0": LLMAgent(model), "player_1": LLMAgent(model)}
    episode = run(play(agents, episode_id="replay"))

    assert episode.status == "ok", episode.cause
    assert episode.info["winner"] is None  # the scripted draw was played in full
    x_turns = episode.player_turns("player_0")
    assert len(x_turns) == 5
    assert [turn.action for turn in x_turns] == X_DRAW
    for player, turns in (("player_0", x_turns), ("player_1", episode.player_turns("player_1"))):
        ids, mask = training_row(turns)
        assert ids == model.context(f"replay/{player}")
        sampled = [i for turn in turns for i in turn.generation.token_ids]  # type: ignore[union-attr]
        assert [i for i, m in zip(ids, mask, strict=True) if m] == sampled
        # Each turn's end-of-turn id is trained on exactly once and not repeated by the next prompt.
        assert sum(1 for i, m in zip(ids, mask, strict=True) if m and i == END_ID) == len(turns)
        assert all(not (a == b == END_ID) for a, b in itertools.pairwise(ids))
        for turn in turns:
            generation = turn.generation
            assert generation is not None
            assert generation.token_ids[-1] == END_ID
            assert generation.loss_mask == [1] * len(generation.token_ids)
            assert generation.logprobs is not None and len(generation.logprobs) == len(generation.token_ids)
            assert decode_ids(generation.token_ids) == generation.text


def test_later_turns_send_only_the_new_messages() -> None:
    model = MockModel(
        scripted_by_seat({"player_0": [f"<answer>{m}</answer>" for m in X_DRAW], "player_1": O_DRAW})
    )
    run(play({"player_0": LLMAgent(model), "player_1": LLMAgent(model)}))
    x_requests = [r for r in model.requests if r.session == "ep/player_0"]
    first, *later = x_requests
    assert [m.role for m in first.messages] == ["system", "user"]
    assert "GAME RULES" in (first.messages[1].content or "")
    assert "Information of Turn-1" in (first.messages[1].content or "")  # rules and turn 1 merged
    for k, request in enumerate(later, start=2):
        assert len(request.messages) == 1
        content = request.messages[0].content or ""
        assert content.startswith(f"Information of Turn-{k}:")
        assert "GAME RULES" not in content


def test_length_capped_turns_force_the_end_id_into_the_next_prompt() -> None:
    # Bare actions padded past the cap: the model is cut off before its end-of-turn id.
    model = MockModel(scripted_by_seat({"player_0": [m + "    " for m in X_DRAW], "player_1": O_DRAW}))
    capped = LLMAgent(model, template="compact", max_new_tokens=3, memory="session")
    episode = run(
        play({"player_0": capped, "player_1": LLMAgent(model, template="compact", memory="session")})
    )
    assert episode.status == "ok", episode.cause
    turns = episode.player_turns("player_0")
    assert [turn.action for turn in turns] == X_DRAW
    generations = [turn.generation for turn in turns]
    assert all(g is not None and g.finish_reason == "length" for g in generations)
    assert all(END_ID not in g.token_ids for g in generations if g is not None)
    for later in generations[1:]:
        assert later is not None and later.prompt_ids[0] == END_ID  # forced, mask 0
    ids, mask = training_row(turns)
    assert ids == model.context("ep/player_0")[: len(ids)]
    assert sum(mask) == sum(len(g.token_ids) for g in generations if g is not None)


# ----- never raises on bad output; model errors do fail the episode ---------------------------
@pytest.mark.parametrize(
    "reply", ["I don't know", "", "<answer></answer>", "<answer>42</answer>", "\x00\x7f"]
)
def test_unparsable_output_becomes_an_invalid_action_not_an_exception(reply: str) -> None:
    model = MockModel([reply])
    episode = run(play({"player_0": LLMAgent(model), "player_1": LLMAgent(model)}))
    assert episode.status == "ok"
    assert episode.turns[0].invalid is not None
    assert episode.turns[0].invalid["outcome"] == "penalty"
    assert episode.returns["player_0"] < -1


def test_decision_carries_raw_text_when_unparsed_and_the_answer_when_parsed() -> None:
    view = view_of([user("GAME STATE:\nx\nLEGAL ACTIONS: 1, 2")], ["1", "2"])
    unparsed = run(LLMAgent(MockModel(["no answer here"])).act(view))
    parsed = run(LLMAgent(MockModel(["<think>2?</think><answer> 2 </answer>"])).act(view))
    assert isinstance(unparsed, Decision) and isinstance(parsed, Decision)
    assert (unparsed.action, unparsed.info["parsed"]) == ("no answer here", False)
    assert (parsed.action, parsed.info["parsed"]) == ("2", True)
    assert parsed.generation is not None and parsed.generation.text.startswith("<think>")


def test_a_model_error_marks_the_episode_error_with_its_cause() -> None:
    def reply(request: GenerationRequest) -> str:
        if len(model.requests) == 3:  # X, O, then X again: the server dies
            raise ModelError("server at 127.0.0.1:9 went away")
        return f"<answer>{len(model.requests)}</answer>"

    model = MockModel(reply)
    episode = run(play({"player_0": LLMAgent(model), "player_1": LLMAgent(model)}))
    assert episode.status == "error"
    assert episode.cause is not None and "went away" in episode.cause
    assert len(episode.turns) == 2  # the turns before the failure are kept


# ----- templates ------------------------------------------------------------------------------
def test_compact_prompt_is_just_state_and_legal_actions() -> None:
    env = make("tic_tac_toe-v0")
    step = env.reset(seed=0)
    step = env.step({"player_0": "5"})
    view = view_of(list(step.observations["player_1"]), env.legal_actions("player_1"), player="player_1")
    (message,) = CompactTemplate().render(view)
    assert message.role == "user"
    assert message.content == "Legal: 1,2,3,4,6,7,8,9\n123\n4X6\n789\nYou are O."


def test_compact_prompt_flags_a_retry_and_keeps_dashed_rows() -> None:
    text = (
        "Invalid action: 'q' is not legal. Try again.\nInformation of Turn-2:\n"
        "GAME STATE:\n- - -\n=====\nX - O\nLEGAL ACTIONS: a"
    )
    view = view_of([user(text)], ["a"])
    assert CompactTemplate().prompt_text(view) == "Invalid, again.\nLegal: a\n- - -\nX - O"


def test_compact_prompt_squeezes_bars_only_between_one_character_cells() -> None:
    text = "GAME STATE:\nX | 2 | 3\nab | c\nQ|R\nLEGAL ACTIONS: 2, 3"
    view = view_of([user(text)], ["2", "3"])
    assert CompactTemplate().prompt_text(view) == "Legal: 2,3\nX23\nab|c\nQR"


@pytest.mark.parametrize(
    ("name", "tic_tac_toe", "partial"),
    [
        ("board", "123\n4X6\n789\nYou are O.", "Legal: 1,2\n1X\nYou are O."),
        # The seat line before the grid; everything else as `board`.
        ("seat_first", "You are O.\n123\n4X6\n789", "Legal: 1,2\nYou are O.\n1X"),
    ],
)
def test_board_prompts_drop_the_legal_list_only_when_the_grid_shows_every_legal_move(
    name: str, tic_tac_toe: str, partial: str
) -> None:
    from palaestra.agents.llm import TEMPLATES

    template = TEMPLATES[name]
    env = make("tic_tac_toe-v0")
    env.reset(seed=0)
    step = env.step({"player_0": "5"})
    view = view_of(list(step.observations["player_1"]), env.legal_actions("player_1"), player="player_1")
    assert template.prompt_text(view) == tic_tac_toe
    # A legal move the state does not show as a cell keeps the list (Kuhn-like states).
    cards = view_of([user("GAME STATE:\nYour card: K\nLEGAL ACTIONS: pass, bet")], ["pass", "bet"])
    assert template.prompt_text(cards) == "Legal: pass,bet\nYour card: K"
    half = view_of([user("GAME STATE:\n1 | X\nYou are O.\nLEGAL ACTIONS: 1, 2")], ["1", "2"])
    assert template.prompt_text(half) == partial
    assert LLMAgent("tiny", template=name).memory == "turn"


def test_compact_prompt_without_a_game_block_shows_the_new_user_text() -> None:
    view = view_of([system("be nice"), user("hello"), user("how are you?")], None)
    assert CompactTemplate().prompt_text(view) == "hello\nhow are you?"


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("5", "5"),
        (" 5 \n", "5"),
        ("5<|end|>", "5"),
        ("call<|im_end|>", "call"),
        ("<answer>3</answer>", "3"),
        ("", None),
    ],
)
def test_compact_parse(text: str, action: str | None) -> None:
    assert CompactTemplate().parse(text) == action


def test_mars_parse_takes_the_last_answer() -> None:
    template = MarsTemplate()
    assert template.parse("<answer>1</answer> no wait <ANSWER>2</ANSWER>") == "2"
    assert template.parse("just 3") is None


def test_mars_render_passes_messages_through_and_merges_consecutive_user_messages() -> None:
    rules = system("rules", name="env")
    view = view_of([rules, user("a", name="env", id="m1"), user("b", name="env")])
    rendered = MarsTemplate().render(view)
    assert rendered == [rules, Message(role="user", content="a\n\nb", name="env")]
    alone = user("only", name="env")
    assert MarsTemplate().render(view_of([alone])) == [alone]


@given(st.text(alphabet=st.sampled_from("ab <|>end/s\n"), max_size=30))
def test_strip_end_markers_only_removes_trailing_markers(text: str) -> None:
    body = text + "x"  # ends in a plain character: nothing of it may be stripped
    assert strip_end_markers(body) == body
    assert strip_end_markers(body + "<|end|>") == body
    assert strip_end_markers(body + " <|im_end|>\n</s> ") == body


ACTIONS = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12
).filter(lambda text: "<" not in text)


@given(action=ACTIONS, padding=st.sampled_from(["", " ", "\n", " \n "]))
def test_compact_parse_reads_back_any_bare_action(action: str, padding: str) -> None:
    assert CompactTemplate().parse(padding + action + padding + "<|end|>") == action


@given(action=ACTIONS, before=st.text(max_size=30).filter(lambda text: "<answer>" not in text.lower()))
def test_mars_parse_reads_back_any_answer(action: str, before: str) -> None:
    assert MarsTemplate().parse(f"{before}<answer>{action}</answer>") == action


def test_compact_default_cap_fits_the_longest_legal_action() -> None:
    assert CompactTemplate().max_new_tokens(view_of([], ["1", "22", "raise"])) == 7
    assert CompactTemplate().max_new_tokens(view_of([], None)) == 64


def test_auto_template_follows_the_model(tmp_path: Path) -> None:
    assert template_for_model("tiny").name == "compact"
    assert template_for_model("mock").name == "mars"
    assert template_for_model("openai:gpt-4o@http://127.0.0.1:8000/v1").name == "mars"
    trained = tmp_path / "trained"
    trained.mkdir()
    (trained / "config.json").write_text(json.dumps({"palaestra": {"prompt_template": "compact"}}))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert template_for_model(f"hf:{trained}").name == "compact"
    assert template_for_model(f"hf:{other}").name == "mars"
    # Model instances: a declared template, else the folder a local engine loaded, else mars.
    engine_like = MockModel()
    assert template_for_model(engine_like).name == "mars"
    engine_like.path = trained  # type: ignore[attr-defined]
    assert template_for_model(engine_like).name == "compact"
    engine_like.prompt_template = "mars"  # type: ignore[attr-defined]
    assert template_for_model(engine_like).name == "mars"


# ----- sampling, sessions -----------------------------------------------------------------------
def test_sampling_parameters_and_sessions_reach_the_model() -> None:
    model = MockModel(["<answer>1</answer>"])
    agent = LLMAgent(model, temperature=0.6, top_p=0.9, max_new_tokens=8, stop=("</answer>",))
    view = view_of([user("x")], ["1"], episode_id="ep7", player="player_1", seed=11)
    run(agent.act(view))
    request = model.requests[0]
    assert request.session == "ep7/player_1"
    assert request.sampling == SamplingParams(
        temperature=0.6, top_p=0.9, max_new_tokens=8, stop=("</answer>",), seed=11
    )


def test_decision_seeds_follow_the_episode_and_the_agent_seed() -> None:
    plain, seeded = LLMAgent(MockModel()), LLMAgent(MockModel(), seed=3)
    seeds = {plain.sampling_for(view_of([], None, seed=s)).seed for s in range(5)}
    assert seeds == set(range(5))
    assert (
        seeded.sampling_for(view_of([], None, seed=1)).seed
        != plain.sampling_for(view_of([], None, seed=1)).seed
    )
    assert (
        seeded.sampling_for(view_of([], None, seed=1)).seed
        == seeded.sampling_for(view_of([], None, seed=1)).seed
    )


def test_close_ends_the_agents_sessions() -> None:
    model = MockModel(["<answer>1</answer>"])
    agent = LLMAgent(model)

    async def scenario() -> list[str]:
        await agent.act(view_of([user("a")], ["1"], episode_id="e1"))
        await agent.act(view_of([user("b")], ["1"], episode_id="e2"))
        before = list(model.sessions)
        await agent.close()
        return before

    assert run(scenario()) == ["e1/player_0", "e2/player_0"]
    assert model.sessions == []


def test_legal_retries_resample_an_illegal_answer_with_new_seeds_and_sessions() -> None:
    # Each retry is a fresh session (the mock script restarts), so a per-seed reply function
    # decides: the first two seeds answer an occupied cell, the third a free one.
    answers = iter(["5", "5", "2"])
    model = MockModel(lambda request: next(answers))
    agent = LLMAgent(model, template="compact", legal_retries=3)
    decision = run(agent.act(view_of([user("x")], ["1", "2", "3"], episode_id="e", seed=4)))
    assert decision.action == "2"
    assert [r.session for r in model.requests] == ["e/player_0/0", "e/player_0/0/r1", "e/player_0/0/r2"]
    assert len({r.sampling.seed for r in model.requests}) == 3


def test_legal_retries_give_up_and_return_the_last_illegal_answer() -> None:
    model = MockModel(["9"])
    agent = LLMAgent(model, template="compact", legal_retries=2)
    decision = run(agent.act(view_of([user("x")], ["1"], episode_id="e")))
    assert decision.action == "9" and len(model.requests) == 3
    without = LLMAgent(MockModel(["9"]), template="compact")
    assert run(without.act(view_of([user("x")], ["1"], episode_id="e"))).action == "9"
    with pytest.raises(AgentError, match="memory=turn"):
        LLMAgent(MockModel(), template="mars", legal_retries=1)


def test_legal_only_decodes_only_legal_answers_on_the_tiny_engine() -> None:
    env = make("tic_tac_toe-v0")
    agent = LLMAgent("tiny", temperature=3.0, legal_only=True)  # hot: unconstrained would babble
    free = LLMAgent("tiny", temperature=3.0)

    async def scenario() -> tuple[list[str], list[str]]:
        constrained, unconstrained = [], []
        for seed in range(12):
            step = env.reset(seed=seed)
            observation, legal = list(step.observations["player_0"]), env.legal_actions("player_0")
            view = view_of(observation, legal, seed=seed, episode_id=f"c{seed}")
            constrained.append((await agent.act(view)).action)
            view = view_of(observation, legal, seed=seed, episode_id=f"u{seed}")
            unconstrained.append((await free.act(view)).action)
        await agent.close()
        await free.close()
        return constrained, unconstrained

    constrained, unconstrained = run(scenario())
    assert all(action in [str(i) for i in range(1, 10)] for action in constrained)
    assert len(set(constrained)) > 1  # still sampled, not a fixed answer
    assert any(action not in [str(i) for i in range(1, 10)] for action in unconstrained)
    assert agent.sampling_for(view_of([user("x")], ["3", "7"])).allowed == ("3", "7")
    mars = LLMAgent("tiny", template="mars", legal_only=True)
    assert mars.sampling_for(view_of([user("x")], ["3"])).allowed == ("<answer>3</answer>",)


def test_legal_only_refuses_engines_that_cannot_constrain() -> None:
    with pytest.raises(AgentError, match="legal_only needs an engine"):
        LLMAgent(MockModel(), template="compact", legal_only=True)
    _, options = parse_llm_spec("tiny?legal_only=true&temperature=2")
    assert options == {"legal_only": True, "temperature": 2.0}
    with pytest.raises(AgentError, match="legal_only must be true or false"):
        parse_llm_spec("tiny?legal_only=maybe")


def test_bad_agent_arguments_are_one_line_agent_errors() -> None:
    for kwargs in ({"temperature": -1.0}, {"top_p": 0.0}, {"max_new_tokens": 0}, {"template": "chatty"}):
        with pytest.raises(AgentError) as caught:
            LLMAgent(MockModel(), **kwargs)
        assert "\n" not in str(caught.value)


# ----- the llm: spec -----------------------------------------------------------------------------
def test_spec_options_after_a_question_mark() -> None:
    assert parse_llm_spec("tiny?temperature=0.6&max_new_tokens=8") == (
        "tiny",
        {"temperature": 0.6, "max_new_tokens": 8},
    )
    assert parse_llm_spec("openai:gpt-4o@http://127.0.0.1:8000/v1?template=compact&seed=2") == (
        "openai:gpt-4o@http://127.0.0.1:8000/v1",
        {"template": "compact", "seed": 2},
    )
    assert parse_llm_spec("hf:/models/x") == ("hf:/models/x", {})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("llm:mock?temprature=1", "unknown option 'temprature'"),
        ("llm:mock?max_new_tokens=lots", "max_new_tokens must be an integer"),
        ("llm:mock?max_new_tokens=8.5", "max_new_tokens must be an integer"),
        ("llm:mock?seed", "needs a value"),
        ("llm:mock?template=chatty", "unknown prompt template"),
        ("llm:bogus", "unknown model spec 'bogus'"),
        ("llm:hf:/no/such/model", "not a Hugging Face model folder"),
        ("llm:openai:@http://127.0.0.1:1/v1", "names no model"),
    ],
)
def test_bad_specs_fail_early_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(AgentError, match=message) as caught:
        agent_factory(spec)
    assert "\n" not in str(caught.value)


def test_agent_factory_understands_both_spec_forms() -> None:
    forget_models()
    for spec in (
        "llm:mock?temperature=0.25&max_new_tokens=5",
        "llm:model=mock,temperature=0.25,max_new_tokens=5",
    ):
        agent = agent_factory(spec)()
        assert isinstance(agent, LLMAgent)
        assert agent.model is resolve_model("mock")  # built by the factory, shared
        assert (agent.temperature, agent.max_new_tokens) == (0.25, 5)
    assert llm_agent(arg="mock")().template.name == "mars"
    assert parse_llm_spec("") == ("tiny", {})  # plain `llm` is the embedded model
    forget_models()


def test_each_factory_call_is_a_fresh_agent_sharing_one_model() -> None:
    forget_models()
    factory = llm_agent(arg="mock")

    async def scenario() -> bool:
        first, second = factory(), factory()
        assert first is not second
        return first.model is second.model

    assert run(scenario())


# ----- mock model -------------------------------------------------------------------------------
@given(st.text(max_size=50))
def test_mock_tokenizer_round_trips(text: str) -> None:
    assert decode_ids(encode_text(text)) == text


def test_mock_context_is_prompts_plus_sampled_ids() -> None:
    model = MockModel(["hi", "there"])

    async def scenario() -> list[Any]:
        first = await model.generate(GenerationRequest("s", [system("S"), user("U")]))
        second = await model.generate(GenerationRequest("s", [user("V")]))
        return [first, second]

    first, second = run(scenario())
    assert first.prompt_ids == [
        ROLE_IDS["system"],
        *encode_text("S"),
        END_ID,
        ROLE_IDS["user"],
        *encode_text("U"),
        END_ID,
        ROLE_IDS["assistant"],
    ]
    assert first.token_ids == [*encode_text("hi"), END_ID]
    assert (first.text, second.text) == ("hi", "there")
    assert model.context("s") == first.prompt_ids + first.token_ids + second.prompt_ids + second.token_ids


def test_mock_stop_strings_length_caps_and_token_in() -> None:
    model = MockModel(["<answer>7</answer> trailing"])

    async def scenario() -> list[Any]:
        stopped = await model.generate(
            GenerationRequest("a", [user("q")], SamplingParams(stop=("</answer>",)))
        )
        capped = await model.generate(GenerationRequest("b", [user("q")], SamplingParams(max_new_tokens=4)))
        token_in = await model.generate(GenerationRequest("b", prompt_ids=[99, 98]))
        return [stopped, capped, token_in]

    stopped, capped, token_in = run(scenario())
    assert (stopped.text, stopped.finish_reason) == ("<answer>7</answer>", "stop")
    assert END_ID not in stopped.token_ids
    assert (capped.text, capped.finish_reason, len(capped.token_ids)) == ("<ans", "length", 4)
    assert token_in.prompt_ids == [END_ID, 99, 98, ROLE_IDS["assistant"]]
    assert model.context("a")[-1] == END_ID  # the stop left the end-of-turn to be forced


def test_mock_scripts_functions_and_default_policy() -> None:
    async def async_reply(request: GenerationRequest) -> str:
        return str(len(request.messages))

    async def scenario() -> list[str]:
        cycling = MockModel(["a", "b"])
        texts = [(await cycling.generate(GenerationRequest("s", [user("x")]))).text for _ in range(3)]
        texts.append((await cycling.generate(GenerationRequest("t", [user("x")]))).text)
        texts.append(
            (await MockModel(async_reply).generate(GenerationRequest(None, [user("x"), user("y")]))).text
        )
        default = MockModel()
        offered = [user("Information of Turn-1:\nGAME STATE:\n.\nLEGAL ACTIONS: 3, 7, 9")]
        texts.append((await default.generate(GenerationRequest("u", offered))).text)
        texts.append((await default.generate(GenerationRequest("v", [user("free text")]))).text)
        return texts

    texts = run(scenario())
    assert texts[:5] == ["a", "b", "a", "a", "2"]
    assert texts[5] in {"<answer>3</answer>", "<answer>7</answer>", "<answer>9</answer>"}
    assert texts[6] == "ok"
    assert legal_actions_in([user("1|2\nLegal: 1,2")]) == ["1", "2"]


def test_mock_memory_stays_bounded() -> None:
    model = MockModel(["a"], max_sessions=2, keep_requests=3)

    async def scenario() -> None:
        for session in ("s1", "s2", "s1", "s3"):
            await model.generate(GenerationRequest(session, [user("x")]))

    run(scenario())
    assert model.sessions == ["s1", "s3"]  # s2 was the least recently used
    assert [r.session for r in model.requests] == ["s2", "s1", "s3"]


def test_mock_errors() -> None:
    with pytest.raises(ValueError, match="at least one reply"):
        MockModel([])
    model = MockModel([RuntimeError("scripted failure")])
    with pytest.raises(RuntimeError, match="scripted failure"):
        run(model.generate(GenerationRequest("s", [user("x")])))
    run(model.close())
    with pytest.raises(ModelError, match="closed"):
        run(model.generate(GenerationRequest("s", [user("x")])))


def test_mock_self_play_with_the_default_policy_finishes_cleanly() -> None:
    model = MockModel()

    async def many() -> list[Episode]:
        return await asyncio.gather(
            *(
                play({"player_0": LLMAgent(model), "player_1": LLMAgent(model)}, episode_id=f"e{i}", seed=i)
                for i in range(16)
            )
        )

    episodes = run(many())
    assert all(e.status == "ok" and e.terminated for e in episodes)
    assert all(turn.invalid is None for e in episodes for turn in e.turns)
    assert len({tuple(turn.action for turn in e.turns) for e in episodes}) > 1  # seeds differ, games differ
    round_trip = Episode.from_json(episodes[0].to_json())
    assert round_trip.turns[0].generation == episodes[0].turns[0].generation


# ----- registry ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("gpt-4o@http://127.0.0.1:8000/v1", ("gpt-4o", "http://127.0.0.1:8000/v1")),
        ("org/model@v2@https://host/v1", ("org/model@v2", "https://host/v1")),
        ("gpt-4o", ("gpt-4o", None)),
    ],
)
def test_openai_targets_split_at_the_url(target: str, expected: tuple[str, str | None]) -> None:
    assert split_openai_target(target) == expected


def test_model_specs_parse(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert parse_model_spec("tiny").kind == "tiny"
    assert parse_model_spec(f"hf:{tmp_path}").target == str(tmp_path)
    assert parse_model_spec(str(tmp_path)).kind == "hf"  # a bare model folder
    assert parse_model_spec("openai:gpt-4o").kind == "openai"
    for bad in ("", "hf:", "tiny:extra", "vllm:x"):
        with pytest.raises(ValueError):
            parse_model_spec(bad)


def test_resolve_model_shares_one_instance_per_spec_and_loop() -> None:
    forget_models()

    async def in_loop() -> tuple[Any, Any]:
        return resolve_model("mock"), resolve_model("mock")

    first, again = run(in_loop())
    assert first is again
    assert resolve_model("mock", latency_s=0.5) is not first  # other options, other instance
    later, _ = run(in_loop())  # the first loop is closed: a fresh instance
    assert later is not first
    forget_models()


# ----- the embedded tiny model end to end --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if importlib.util.find_spec("palaestra.models.local") is None:
        pytest.skip("palaestra.models.local (the local engine, helper B) is not in this tree yet")
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("palaestra-cache")
    previous = os.environ.get("PALAESTRA_CACHE")
    os.environ["PALAESTRA_CACHE"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["PALAESTRA_CACHE"]
    else:
        os.environ["PALAESTRA_CACHE"] = previous


def test_llm_tiny_plays_tic_tac_toe_against_random(tiny_cache: Path) -> None:
    from transformers import AutoTokenizer

    from palaestra.models.tiny import default_tiny_path

    forget_models()
    tiny = agent_factory("llm:tiny?temperature=1.0")
    random_agent = agent_factory("random")

    async def episode() -> Episode:
        agents = {"player_0": tiny(), "player_1": random_agent()}
        env = make("tic_tac_toe-v0", invalid_action="retry", retries=2)
        result = await play_episode(
            env,
            agents,
            episode_id="t0",
            seed=0,
            env_id="tic_tac_toe-v0",
            agent_specs={"player_0": "llm:tiny", "player_1": "random"},
        )
        await resolve_model("tiny").close()
        return result

    result = run(episode())
    forget_models()
    assert result.status == "ok", result.cause
    tokenizer = AutoTokenizer.from_pretrained(default_tiny_path())
    turns = result.player_turns("player_0")
    assert turns
    ids, _ = training_row(turns)
    decoded = tokenizer.decode(ids)
    position = 0
    for turn in turns:
        generation = turn.generation
        assert generation is not None
        assert generation.token_ids and generation.loss_mask == [1] * len(generation.token_ids)
        assert generation.logprobs is not None and len(generation.logprobs) == len(generation.token_ids)
        assert len(generation.token_ids) <= 3  # the compact cap: longest legal action + 2
        # The compact prompt, rendered by the engine's chat template, is in the row in order.
        legal = ",".join(turn.legal_actions or [])
        found = decoded.find(f"Legal: {legal}\n", position)
        assert found >= position
        position = found + 1
    assert decoded.startswith(
        "<|user|>Legal: 1,2,3,4,5,6,7,8,9\n123\n456\n789\nYou are X.<|end|><|assistant|>"
    )
