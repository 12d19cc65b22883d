"""Native tool calling both ways, and what trainers and evaluators send `palaestra serve`.

The server runs on 127.0.0.1 (uvicorn in a thread) over `ScriptedEngine`: a session-keeping engine
that follows the local engines' token rule through `palaestra.models.prompting` (the tiny model's
real tokenizer, with a chat template that writes tools into a system turn, as Qwen's and Hermes'
do) and answers from a script, so every id is real and nothing needs torch. The clients are the
real `openai` package and palaestra's `OpenAIModel`; the verifiers token client and prime-rl's
renderer client are replayed by their request shapes (verifiers is not a dependency).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
import uvicorn

import palaestra.envs.service  # noqa: F401 - registers shop-v0
from palaestra.agents.base import agent_factory
from palaestra.core import make
from palaestra.core.messages import Message, ToolCall, user
from palaestra.core.records import Generation
from palaestra.envs.service.domain import load_domain
from palaestra.envs.service.toolkit import ToolArgumentError, ToolContext, tool, tool_spec
from palaestra.models.base import GenerationRequest, ModelError, SamplingParams
from palaestra.models.openai_client import OpenAIModel, ToolCallGeneration
from palaestra.models.prompting import (
    ChatPrompts,
    GenerationRequestWithTools,
    SessionContext,
    parse_tool_calls,
    request_tools,
)
from palaestra.models.registry import forget_models
from palaestra.models.tiny import CHAT_TEMPLATE, END_OF_TURN, build_tiny_tokenizer
from palaestra.rollout.episode import play_episode
from palaestra.serve import create_app

MODEL = "scripted"
TOOLS_TEMPLATE = (
    "{%- if tools -%}<|system|># Tools{%- for tool in tools -%} {{ tool | tojson }}{%- endfor -%}<|end|>"
    "{%- endif -%}" + CHAT_TEMPLATE
)
"""The tiny model's template, with tools written into a first system turn when a request has them."""
ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "order",
        "description": "Look up an order.",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
    },
}
CALL_TEXT = '<tool_call>{"name": "order", "arguments": {"id": "F1091"}}</tool_call>'


# --- the engine behind the server ----------------------------------------------------------------


class ScriptedEngine:
    """A `Model` that keeps token-exact sessions as the local engines do (same prompt rule, a real
    tokenizer and chat template) and answers `reply(request)`."""

    def __init__(self, reply: Callable[[GenerationRequest], str], template: str = TOOLS_TEMPLATE) -> None:
        self.name = MODEL
        self.tokenizer = build_tiny_tokenizer()
        self.tokenizer.chat_template = template
        self.prompts = ChatPrompts(self.tokenizer)
        self.renderer = self.prompts.renderer
        self.stop_token_ids = self.prompts.stop_token_ids
        self.max_positions = 4096
        self.vocab_size = len(self.tokenizer)
        self.end_id = self.tokenizer.convert_tokens_to_ids(END_OF_TURN)
        self.reply = reply
        self.requests: list[GenerationRequest] = []
        self.contexts: dict[str, SessionContext] = {}

    async def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        context = (
            self.contexts.setdefault(request.session, SessionContext())
            if request.session
            else SessionContext()
        )
        prompt_ids = context.prompt_for(self.prompts.delta_ids(request, context, len(self.tokenizer)))
        context.feed(prompt_ids)
        text = self.reply(request)
        cuts = [text.find(stop) + len(stop) for stop in request.sampling.stop if stop in text]
        finish = "stop"
        sampled = (
            self.renderer.encode(text[: min(cuts)]) if cuts else [*self.renderer.encode(text), self.end_id]
        )
        if len(sampled) > request.sampling.max_new_tokens:
            sampled, finish = sampled[: request.sampling.max_new_tokens], "length"
        context.add_reply(sampled, self.prompts.forced_ids(finish, sampled))
        return Generation(
            text=self.tokenizer.decode(sampled, skip_special_tokens=True),
            prompt_ids=prompt_ids,
            token_ids=sampled,
            logprobs=[-0.5] * len(sampled),
            loss_mask=[1] * len(sampled),
            finish_reason=finish,
            model=self.name,
        )

    def session_ids(self, session: str) -> list[int]:
        return list(self.contexts[session].ids)

    async def end_session(self, session: str) -> None:
        self.contexts.pop(session, None)

    async def close(self) -> None:
        pass


class Server:
    """`palaestra serve`'s app on 127.0.0.1 in a thread; stopped on every exit path of `with`."""

    def __init__(self, model: Any, **options: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.root = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.url = f"{self.root}/v1"
        app = create_app(model, model_name=MODEL, **options)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="critical", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.__exit__()
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def engine() -> ScriptedEngine:
    def reply(request: GenerationRequest) -> str:
        last = request.messages[-1] if request.messages else None
        if last is not None and last.role == "tool":
            return f"Done: {last.content}"
        return CALL_TEXT if request_tools(request) else "plain"

    return ScriptedEngine(reply)


@pytest.fixture
def server(engine: ScriptedEngine) -> Iterator[Server]:
    with Server(engine) as running:
        yield running


def sync_client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(api_key="none", base_url=server.url, max_retries=0)


# --- the real openai client against palaestra serve ----------------------------------------------


def test_openai_client_with_tools_gets_tool_calls(server: Server, engine: ScriptedEngine) -> None:
    with sync_client(server) as client:
        response = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What did F1091 cost?"}],
            tools=[ORDER_TOOL],  # type: ignore[list-item]
            extra_body={"return_token_ids": True},
        )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "order" and json.loads(call.function.arguments) == {"id": "F1091"}
    # The tools reached the model through its chat template...
    [request] = engine.requests
    assert request_tools(request) == (ORDER_TOOL,)
    prompt = engine.tokenizer.decode(response.model_extra["prompt_token_ids"], skip_special_tokens=False)
    assert prompt.startswith("<|system|># Tools") and '"name": "order"' in prompt
    # ...and the sampled ids came back unchanged: the call's text and the end-of-turn token.
    sampled = choice.model_extra["token_ids"]
    assert engine.tokenizer.decode(sampled, skip_special_tokens=False) == CALL_TEXT + END_OF_TURN


@pytest.mark.parametrize(
    "text",
    [
        CALL_TEXT,  # the tiny model's own form, as the service envs ask for it
        '<tool_call>\n{"name": "order", "arguments": {"id": "F1091"}}\n</tool_call>',  # Qwen / Hermes
        '<tool_call>\n{"name": "order", "arguments": "{\\"id\\": \\"F1091\\"}"}',  # unclosed, string args
    ],
    ids=["tiny", "qwen", "unclosed"],
)
def test_the_tool_call_forms_of_open_models_are_read(text: str) -> None:
    parsed = parse_tool_calls(text, lambda: "call_1")
    assert parsed.content is None
    assert parsed.tool_calls == (ToolCall("call_1", "order", {"id": "F1091"}),)


def test_text_around_calls_is_content_and_broken_calls_stay_text() -> None:
    two = f"Let me look. {CALL_TEXT}\n{CALL_TEXT.replace('F1091', 'V6750')}"
    ids = iter(["a", "b"])
    parsed = parse_tool_calls(two, lambda: next(ids))
    assert parsed.content == "Let me look."
    assert [(c.id, c.arguments["id"]) for c in parsed.tool_calls] == [("a", "F1091"), ("b", "V6750")]
    for broken in (
        '<tool_call>{"name": "order", "arguments": [1]}</tool_call>',
        "<tool_call>{oops</tool_call>",
    ):
        assert parse_tool_calls(broken, lambda: "x").tool_calls == ()
        assert parse_tool_calls(broken, lambda: "x").content == broken


def test_tool_choice_none_and_requests_without_tools_read_no_calls(
    server: Server, engine: ScriptedEngine
) -> None:
    engine.reply = lambda request: CALL_TEXT
    with sync_client(server) as client:
        shown = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=[ORDER_TOOL], tool_choice="none"
        )
        plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    for response in (shown, plain):
        assert response.choices[0].message.tool_calls is None
        assert response.choices[0].message.content == CALL_TEXT
        assert response.choices[0].finish_reason == "stop"


def test_a_forced_tool_choice_is_refused_naming_it(server: Server) -> None:
    with sync_client(server) as client, pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            tools=[ORDER_TOOL],
            tool_choice="required",
        )
    assert refused.value.body["param"] == "tool_choice"  # type: ignore[index]


def test_streamed_tool_calls_arrive_as_deltas(server: Server) -> None:
    with sync_client(server) as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], tools=[ORDER_TOOL], stream=True
            )
        )
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    assert [(call.function.name, json.loads(call.function.arguments)) for call in calls] == [  # type: ignore[union-attr]
        ("order", {"id": "F1091"})
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


# --- a service episode through palaestra's own client ---------------------------------------------


def test_a_service_episode_with_llm_openai_applies_a_native_tool_call(
    server: Server, engine: ScriptedEngine
) -> None:
    def agent_reply(request: GenerationRequest) -> str:
        last = request.messages[-1]
        if last.role == "tool":  # the env's answer to the call: say the total it read
            return f"The total of F1091 is {(last.content or '').rpartition('total=')[2]}."
        return CALL_TEXT

    engine.reply = agent_reply
    forget_models()
    spec = f"llm:openai:{MODEL}@{server.url}?max_retries=0&timeout_s=30"

    async def go() -> Any:
        env = make("shop-v0")
        agents = {"agent": agent_factory(spec)(), "user": agent_factory("scripted_user")()}
        try:
            return await play_episode(
                env,
                agents,
                episode_id="ep-tools",
                seed=0,
                env_id="shop-v0",
                agent_specs={"agent": spec, "user": "scripted_user"},
            )
        finally:
            from palaestra.models.registry import close_models

            await close_models()

    episode = asyncio.run(go())
    assert episode.status == "ok", episode.cause
    turns = episode.player_turns("agent")
    call_turn = next(turn for turn in turns if isinstance(turn.action, Message) and turn.action.tool_calls)
    [call] = call_turn.action.tool_calls  # type: ignore[union-attr]
    assert call.name == "order" and call.arguments == {"id": "F1091"} and call.id.startswith("call_")
    # The env ran the call and answered it as a role-tool message quoting the server's call id.
    answer = turns[turns.index(call_turn) + 1].observation
    [result] = [m for m in answer if m.role == "tool"]
    assert result.tool_call_id == call.id and "total: 72.14" in (result.content or "")
    # The engine was sent the env's tools, and the tool result continued its session token-exactly.
    tool_names = [[t["function"]["name"] for t in request_tools(r)] for r in engine.requests]
    assert tool_names[0] == ["order", "refund"]
    assert engine.requests[1].messages[0].role == "tool"
    generations = [turn.generation for turn in turns if turn.generation is not None]
    rebuilt = [i for g in generations for i in (*g.prompt_ids, *g.token_ids)]
    assert rebuilt == engine.session_ids("ep-tools/agent")
    assert episode.returns["agent"] == 1.0  # the final answer says the total the tool returned


def test_openai_model_sends_tools_and_returns_tool_calls(server: Server) -> None:
    async def go() -> list[Generation]:
        client = OpenAIModel(MODEL, server.url, max_retries=0)
        try:
            first = await client.generate(
                GenerationRequestWithTools("s-1", [user("total of F1091?")], tools=(ORDER_TOOL,))
            )
            assert isinstance(first, ToolCallGeneration)
            [call] = first.tool_calls
            result = Message(role="tool", content="total=90.56", tool_call_id=call.id, name="order")
            second = await client.generate(GenerationRequestWithTools("s-1", [result], tools=(ORDER_TOOL,)))
            return [first, second]
        finally:
            await client.close()

    first, second = asyncio.run(go())
    assert first.text == CALL_TEXT  # the model's exact text, from the server's extension
    assert second.text == "Done: total=90.56" and not isinstance(second, ToolCallGeneration)


# --- what trainers send: token ids, sessions ----------------------------------------------------


def _bridge(server: Server, env_messages: list[dict[str, Any]], stop_id: int) -> list[int]:
    """What verifiers' token client sends `/tokenize` to bridge a turn: the ids of the env's
    messages after a dummy assistant turn, from the stop token's end on."""
    dummy = {"role": "assistant", "content": "x"}
    full = httpx.post(
        f"{server.root}/tokenize", json={"model": MODEL, "messages": [dummy, *env_messages]}
    ).json()
    base = httpx.post(
        f"{server.root}/tokenize", json={"model": MODEL, "messages": [dummy], "add_generation_prompt": False}
    ).json()
    full_ids, base_ids = full["tokens"], base["tokens"]
    assert full_ids[: len(base_ids)] == base_ids and full["max_model_len"] == 4096
    gap = next((len(base_ids) - i - 1 for i in range(len(base_ids) - 1, -1, -1) if base_ids[i] == stop_id), 0)
    return full_ids[len(base_ids) - gap :]


def test_verifiers_token_client_turns_extend_each_other(server: Server, engine: ScriptedEngine) -> None:
    headers = {"X-Session-ID": "rollout-7"}
    sampling = {"max_completion_tokens": 64, "logprobs": True}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "one"},
    ]
    with sync_client(server) as client:
        turn = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            extra_headers=headers,
            extra_body={"return_token_ids": True},
            **sampling,
        )
        turns = [turn]
        for said in ("two", "three"):
            previous = turns[-1]
            prompt_ids = previous.model_extra["prompt_token_ids"]
            completion_ids = previous.choices[0].model_extra["token_ids"]
            messages.append({"role": "assistant", "content": previous.choices[0].message.content})
            env_messages = [{"role": "user", "content": said}]
            messages += env_messages
            tokens = prompt_ids + completion_ids + _bridge(server, env_messages, completion_ids[-1])
            turns.append(
                client.post(
                    "/chat/completions/tokens",
                    body={
                        "model": MODEL,
                        "messages": messages,
                        "tokens": tokens,
                        "return_token_ids": True,
                        **sampling,
                    },
                    cast_to=openai.types.chat.ChatCompletion,
                    options={"headers": headers},
                )
            )
            assert turns[-1].model_extra["prompt_token_ids"] == tokens
    for before, after in itertools.pairwise(turns):
        context = before.model_extra["prompt_token_ids"] + before.choices[0].model_extra["token_ids"]
        assert after.model_extra["prompt_token_ids"][: len(context)] == context
        assert after.model_extra["palaestra"]["continued"] is True
    # The engine read each turn's new ids only, and its context is the whole conversation.
    assert [r.prompt_ids is None for r in engine.requests] == [True, False, False]
    last = turns[-1]
    assert (
        engine.session_ids("rollout-7")
        == last.model_extra["prompt_token_ids"] + last.choices[0].model_extra["token_ids"]
    )
    assert all(choice.logprobs is not None for t in turns for choice in t.choices)


def test_x_session_id_keeps_a_chat_session_token_exact(server: Server, engine: ScriptedEngine) -> None:
    engine.reply = lambda request: f"reply to {request.messages[-1].content}"
    messages: list[dict[str, Any]] = [{"role": "user", "content": "one"}]
    responses = []
    with sync_client(server) as client:
        for said in ("two", "three", None):
            response = client.chat.completions.create(
                model=MODEL,
                messages=messages,
                extra_headers={"X-Session-ID": "vf-1"},
                extra_body={"return_token_ids": True},
            )
            responses.append(response)
            messages.append({"role": "assistant", "content": response.choices[0].message.content})
            if said:
                messages.append({"role": "user", "content": said})
    # Whole prompts (as vLLM reports them), each extending the previous prompt and completion...
    for before, after in itertools.pairwise(responses):
        context = before.model_extra["prompt_token_ids"] + before.choices[0].model_extra["token_ids"]
        assert after.model_extra["prompt_token_ids"][: len(context)] == context
    # ...while the engine was handed only the new messages.
    assert [[m.content for m in r.messages] for r in engine.requests] == [["one"], ["two"], ["three"]]


def test_inference_generate_takes_prompt_ids_and_returns_sampled_ids(
    server: Server, engine: ScriptedEngine
) -> None:
    engine.reply = lambda request: "ok"
    prompt = engine.prompts.renderer.first([user("hi")])
    body = {
        "model": MODEL,
        "token_ids": prompt,
        "sampling_params": {"max_tokens": 8, "temperature": 1.0, "logprobs": 1, "skip_special_tokens": False,
                            "stop_token_ids": sorted(engine.stop_token_ids)},
    }  # fmt: skip
    headers = {"X-Session-ID": "prime-1"}
    first = httpx.post(f"{server.root}/inference/v1/generate", json=body, headers=headers).json()
    [choice] = first["choices"]
    assert choice["token_ids"] == [*engine.renderer.encode("ok"), engine.end_id]
    assert [entry["logprob"] for entry in choice["logprobs"]["content"]] == [-0.5] * len(choice["token_ids"])
    assert choice["finish_reason"] == "stop"
    # The next turn's ids extend the first turn's: the engine reads only the new ones.
    body["token_ids"] = [*prompt, *choice["token_ids"], *engine.prompts.renderer.after_reply([user("more")])]
    second = httpx.post(f"{server.root}/inference/v1/generate", json=body, headers=headers).json()
    assert second["palaestra"]["continued"] is True
    assert engine.requests[-1].prompt_ids == engine.prompts.renderer.after_reply([user("more")])
    assert engine.session_ids("prime-1") == [*body["token_ids"], *second["choices"][0]["token_ids"]]


@pytest.mark.parametrize(
    ("sampling", "param"),
    [
        ({"top_k": 20}, "sampling_params.top_k"),
        ({"repetition_penalty": 1.1}, "sampling_params.repetition_penalty"),
        ({"logprobs": 5}, "sampling_params.logprobs"),
        ({"stop_token_ids": [99]}, "sampling_params.stop_token_ids"),
        ({"max_tokens": 10**6}, "sampling_params.max_tokens"),
    ],
)
def test_generate_refuses_what_the_engine_cannot_do_naming_it(
    server: Server, sampling: dict[str, Any], param: str
) -> None:
    body = {"token_ids": [5, 6, 7], "sampling_params": sampling}
    refused = httpx.post(f"{server.root}/inference/v1/generate", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == param


def test_prompt_ids_outside_the_vocabulary_are_a_400(server: Server, engine: ScriptedEngine) -> None:
    refused = httpx.post(f"{server.root}/inference/v1/generate", json={"token_ids": [5, engine.vocab_size]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "token_ids"
    assert engine.requests == []


def test_tokenize_and_detokenize(server: Server, engine: ScriptedEngine) -> None:
    said = httpx.post(f"{server.root}/tokenize", json={"model": MODEL, "prompt": "ab"}).json()
    assert said["tokens"] == engine.renderer.encode("ab") and said["count"] == 2
    chat = httpx.post(
        f"{server.root}/tokenize",
        json={"messages": [{"role": "user", "content": "hi"}], "tools": [ORDER_TOOL]},
    ).json()
    assert chat["tokens"] == engine.renderer.first([user("hi")], (ORDER_TOOL,))
    back = httpx.post(f"{server.root}/detokenize", json={"tokens": chat["tokens"]}).json()
    assert back["prompt"].endswith("<|user|>hi<|end|><|assistant|>")
    models = httpx.get(f"{server.url}/models").json()
    assert models["data"][0]["max_model_len"] == 4096


# --- what evaluators send: n, stops, the Responses API -------------------------------------------


def test_n_choices_stop_strings_and_clear_refusals(server: Server, engine: ScriptedEngine) -> None:
    engine.reply = lambda request: f"seed {request.sampling.seed} END and more"
    with sync_client(server) as client:
        response = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], n=3, seed=5, stop=["END"],
            extra_body={"return_token_ids": True},
        )  # fmt: skip
        assert [c.message.content for c in response.choices] == ["seed 5 ", "seed 6 ", "seed 7 "]
        assert [c.index for c in response.choices] == [0, 1, 2]
        # The stop string is cut from the text, never from the sampled ids.
        sampled = response.choices[0].model_extra["token_ids"]
        assert engine.tokenizer.decode(sampled) == "seed 5 END"
        for option in ({"presence_penalty": 0.5}, {"top_logprobs": 2, "logprobs": True},
                       {"response_format": {"type": "json_object"}}):  # fmt: skip
            with pytest.raises(openai.BadRequestError) as refused:
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], **option
                )
            assert refused.value.body["param"] == next(iter(option))  # type: ignore[index]


def test_responses_api_with_a_function_call_round_trip(server: Server) -> None:
    tool = {"type": "function", "name": "order", "description": "Look up an order.",
            "parameters": ORDER_TOOL["function"]["parameters"]}  # fmt: skip
    with sync_client(server) as client:
        first = client.responses.create(model=MODEL, input="total of F1091?", tools=[tool])  # type: ignore[list-item]
        [call] = [item for item in first.output if item.type == "function_call"]
        assert call.name == "order" and json.loads(call.arguments) == {"id": "F1091"}
        second = client.responses.create(
            model=MODEL,
            instructions="be brief",
            input=[
                {"role": "user", "content": "total of F1091?"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": "order",
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "total=90.56"},
            ],
            tools=[tool],  # type: ignore[list-item]
        )
    assert second.status == "completed" and second.output_text == "Done: total=90.56"
    assert second.usage is not None and second.usage.output_tokens > 0
    with sync_client(server) as client, pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="hi", previous_response_id="resp_1")
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]


# --- tool schemas -----------------------------------------------------------------------------------


@tool
def noted(ctx: ToolContext, order_id: str, note: str | None = None, copy: int = 1) -> str:
    """Note something.

    Args:
        order_id: The order.
        note: A note, if any.
        copy: How many copies.
    """
    return ""


def test_tool_schemas_are_json_schema_from_pydantic() -> None:
    spec = tool_spec(noted)
    assert spec is not None
    parameters = spec.json_schema()["function"]["parameters"]
    assert parameters == {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "description": "The order."},
            "note": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "default": None,
                "description": "A note, if any.",
            },
            "copy": {"type": "integer", "default": 1, "description": "How many copies."},
        },
        "required": ["order_id"],
        "additionalProperties": False,
    }
    assert spec.check_arguments({"order_id": "#1", "note": None}) == {
        "order_id": "#1",
        "note": None,
        "copy": 1,
    }
    with pytest.raises(ToolArgumentError, match="order_id must not be null"):
        spec.check_arguments({"order_id": None})


def test_no_built_in_tool_schema_uses_openapi_nullable() -> None:
    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield key
                yield from keys(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from keys(inner)

    for name in ("retail", "travel", "crm", "shop"):
        for spec in load_domain(name).tools.values():
            found = set(keys(spec.json_schema()["function"]["parameters"]))
            assert not found & {"nullable", "title"}, (name, spec.name)


# --- the real tiny engine --------------------------------------------------------------------------


@pytest.mark.slow
def test_the_tiny_engine_writing_a_call_is_read_token_exactly() -> None:
    from palaestra.models.local import LocalEngine
    from palaestra.models.tiny import default_tiny_path
    from palaestra.serve.replies import read_reply

    engine = LocalEngine(default_tiny_path(), device="cpu", threads=1)

    async def go() -> Generation:
        # Constrained to the call, so the untrained model writes exactly what a trained one would.
        sampling = SamplingParams(max_new_tokens=len(CALL_TEXT) + 2, allowed=(CALL_TEXT,), temperature=0.0)
        try:
            return await engine.generate(GenerationRequest(None, [user("F1091?")], sampling))
        finally:
            await engine.close()

    generation = asyncio.run(go())
    reply = read_reply(engine, generation, stop=(), read_tools=True)
    assert reply.tool_calls[0].name == "order" and reply.tool_calls[0].arguments == {"id": "F1091"}
    assert reply.finish_reason == "tool_calls" and reply.generation.token_ids == generation.token_ids


def test_model_errors_still_answer_json(server: Server, engine: ScriptedEngine) -> None:
    def fail(request: GenerationRequest) -> str:
        raise ModelError("engine down")

    engine.reply = fail
    refused = httpx.post(f"{server.url}/responses", json={"model": MODEL, "input": "hi"})
    assert refused.status_code == 503 and "engine down" in refused.json()["error"]["message"]
