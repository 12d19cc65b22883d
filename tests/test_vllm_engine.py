"""The vLLM backend's mapping of palaestra requests to vLLM and back, with vLLM's types faked
(vLLM needs a GPU): sessions stay token-exact, sampling parameters and logprobs map both ways,
prefix caching is on, and a trainer's weights reach every vLLM worker. The last test runs the
real vLLM and is skipped without it or without a GPU.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from palaestra.core.messages import Message
from palaestra.models.base import GenerationRequest, ModelError, SamplingParams


# ----- fake vLLM ----------------------------------------------------------------------------------
@dataclass
class FakeSamplingParams:
    """Records what the engine asked for (vLLM's SamplingParams takes these keywords)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None
    logprobs: int | None = None
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True


@dataclass
class FakeLogprob:
    logprob: float
    rank: int = 1
    decoded_token: str | None = None


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, FakeLogprob]] | None
    finish_reason: str | None


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]
    finished: bool = True


@dataclass
class FakeModel:
    loaded: list[tuple[str, Any]] = field(default_factory=list)

    def load_weights(self, weights: Any) -> set[str]:
        self.loaded.extend(weights)
        return {name for name, _ in weights}


class FakeLLM:
    """`vllm.LLM` as the engine uses it: generate over token prompts, collective_rpc, prefix cache."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.replies: deque[tuple[list[int], str]] = deque()
        self.calls: list[tuple[list[dict[str, Any]], list[FakeSamplingParams]]] = []
        self.prefix_resets = 0
        self.workers = [
            types.SimpleNamespace(model_runner=types.SimpleNamespace(model=FakeModel())) for _ in range(2)
        ]

    def generate(
        self, prompts: list[dict[str, Any]], params: list[FakeSamplingParams], use_tqdm: bool = True
    ) -> Any:
        assert use_tqdm is False
        self.calls.append((prompts, params))
        outputs = []
        for number, (prompt, _) in enumerate(zip(prompts, params, strict=True)):
            ids, finish = self.replies.popleft()
            # The sampled id's log-prob plus a different top-1 entry, as vLLM returns with logprobs=1.
            entries = [
                {token: FakeLogprob(-0.1 * (i + 1)), 9_999: FakeLogprob(-0.01, rank=1)}
                for i, token in enumerate(ids)
            ]
            completion = FakeCompletionOutput(0, "ignored", ids, None, entries, finish)
            outputs.append(FakeRequestOutput(str(number), prompt["prompt_token_ids"], [completion]))
        return outputs

    def collective_rpc(
        self, method: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> list[Any]:
        return [method(worker, *args, **(kwargs or {})) for worker in self.workers]

    def reset_prefix_cache(self) -> bool:
        self.prefix_resets += 1
        return True


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palaestra.models.tiny import init_tiny_model

    return init_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=32, num_hidden_layers=1)


def engine_for(folder: Path, llm: FakeLLM | None = None, **options: Any) -> Any:
    from palaestra.models.vllm_engine import VLLMEngine

    return VLLMEngine(folder, llm=llm or FakeLLM(), batch_wait_s=0.0, **options)


def user(text: str) -> Message:
    return Message(role="user", content=text)


# ----- tests --------------------------------------------------------------------------------------
def test_sessions_stay_token_exact_across_turns(fake_vllm: Any, tiny_folder: Path) -> None:
    llm = FakeLLM()
    engine = engine_for(tiny_folder, llm)
    renderer = engine.renderer
    end = renderer.turn_end_ids
    five = renderer.encode("5")
    llm.replies.extend([(five + end[:1], "stop"), (renderer.encode("37"), "length")])

    async def main() -> tuple[Any, Any]:
        first = await engine.generate(
            GenerationRequest("ep/p0", [user("Legal: 1,5\nX|2|3")], SamplingParams(temperature=0.7, seed=11))
        )
        second = await engine.generate(
            GenerationRequest("ep/p0", [user("Legal: 3,7")], SamplingParams(max_new_tokens=2, seed=12))
        )
        return first, second

    first, second = asyncio.run(main())
    first_prompt = renderer.first([user("Legal: 1,5\nX|2|3")])
    # Turn 1: the whole rendered prompt in, the sampled ids (end-of-turn token included) out.
    assert llm.calls[0][0] == [{"prompt_token_ids": first_prompt}]
    assert first.prompt_ids == first_prompt
    assert first.token_ids == five + end[:1] and first.text == "5"
    assert first.logprobs == pytest.approx([-0.1 * (i + 1) for i in range(len(first.token_ids))])
    assert first.loss_mask == [1] * len(first.token_ids) and first.session_turn == 0
    assert first.finish_reason == "stop" and first.model.startswith("vllm:")
    # Turn 2: vLLM reads the previous context + what the template forces after the stop token +
    # the new delta; nothing is decoded and encoded again.
    forced = end[1:]
    delta = renderer.after_reply([user("Legal: 3,7")])
    assert second.prompt_ids == forced + delta
    assert llm.calls[1][0] == [{"prompt_token_ids": first_prompt + first.token_ids + forced + delta}]
    assert second.finish_reason == "length" and second.session_turn == 1
    # Stopped by length, the whole end-of-turn text is owed to the next turn.
    assert engine.session_ids("ep/p0") == first_prompt + first.token_ids + forced + delta + second.token_ids
    engine.shutdown()


def test_sampling_parameters_map_to_vllm(fake_vllm: Any, tiny_folder: Path) -> None:
    llm = FakeLLM()
    engine = engine_for(tiny_folder, llm)
    llm.replies.append((engine.renderer.encode("1"), "stop"))
    request = GenerationRequest(
        None,
        [user("hello")],
        SamplingParams(temperature=0.0, top_p=0.9, max_new_tokens=5, stop=("\n",), seed=3),
    )

    async def main() -> Any:
        return await engine.generate(request)

    asyncio.run(main())
    params = llm.calls[0][1][0]
    assert (params.n, params.temperature, params.top_p, params.max_tokens, params.seed) == (1, 0.0, 0.9, 5, 3)
    assert params.logprobs == 1  # the sampled id's log-prob comes back with it
    assert params.stop == ["\n"] and params.include_stop_str_in_output
    assert set(params.stop_token_ids or ()) == set(engine.stop_token_ids)
    assert engine.renderer.turn_end_ids[0] in engine.stop_token_ids
    engine.shutdown()


def test_calls_of_one_step_go_to_vllm_together(fake_vllm: Any, tiny_folder: Path) -> None:
    llm = FakeLLM()
    engine = engine_for(tiny_folder, llm)
    engine.batch_wait_s = 0.05
    llm.replies.extend([(engine.renderer.encode(str(i)), "stop") for i in range(8)])

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(engine.generate(GenerationRequest(f"e{i}/p", [user(f"board {i}")])) for i in range(8))
        )

    generations = asyncio.run(main())
    assert len(generations) == 8 and len(llm.calls) == 1 and len(llm.calls[0][0]) == 8
    engine.shutdown()


def test_engine_options_reach_vllm_with_prefix_caching_and_raw_logprobs(
    fake_vllm: Any, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from palaestra.models.vllm_engine import VLLMEngine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    engine = VLLMEngine(
        tiny_folder, seed=4, gpu_memory_utilization=0.5, max_model_len=512, enforce_eager=True
    )
    options = engine.llm.options
    assert options["model"] == str(tiny_folder) and options["tokenizer"] == str(tiny_folder)
    assert options["enable_prefix_caching"] is True
    assert options["logprobs_mode"] == "raw_logprobs"
    assert (options["seed"], options["gpu_memory_utilization"], options["max_model_len"]) == (4, 0.5, 512)
    assert options["enforce_eager"] is True
    assert engine.prompt_template == "compact"  # the tiny model says so in its config
    engine.shutdown()


def test_trainer_weights_reach_every_vllm_worker_and_reset_the_prefix_cache(
    fake_vllm: Any, tiny_folder: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    llm = FakeLLM()
    engine = engine_for(tiny_folder, llm)
    llm.replies.append((engine.renderer.encode("1"), "stop"))

    async def one_turn() -> Any:
        return await engine.generate(GenerationRequest("s", [user("hi")]))

    asyncio.run(one_turn())
    before = engine.session_ids("s")
    state = AutoModelForCausalLM.from_pretrained(tiny_folder).state_dict()
    engine.load_weights(state)
    for worker in llm.workers:
        loaded = dict(worker.model_runner.model.loaded)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[name], value) for name, value in state.items())
    assert llm.prefix_resets == 1
    assert engine.session_ids("s") == before  # sessions keep their ids; only cached blocks go
    engine.drop_caches()
    assert llm.prefix_resets == 2
    engine.shutdown()


def test_a_busy_session_and_bad_sampling_are_refused(fake_vllm: Any, tiny_folder: Path) -> None:
    llm = FakeLLM()
    engine = engine_for(tiny_folder, llm)
    engine.batch_wait_s = 0.05
    llm.replies.append((engine.renderer.encode("1"), "stop"))

    async def main() -> None:
        first = asyncio.create_task(engine.generate(GenerationRequest("s", [user("a")])))
        await asyncio.sleep(0)
        with pytest.raises(ModelError, match="already has a generation in flight"):
            await engine.generate(GenerationRequest("s", [user("b")]))
        await first
        with pytest.raises(ModelError, match="temperature"):
            await engine.generate(GenerationRequest("t", [user("c")], SamplingParams(temperature=-1)))

    asyncio.run(main())
    engine.shutdown()


def test_an_episode_through_the_llm_agent(fake_vllm: Any, tiny_folder: Path) -> None:
    """The engine as any `Model`: an LLM agent plays tic-tac-toe on it, generations recorded."""
    from palaestra.agents.llm import LLMAgent
    from palaestra.agents.scripted import FirstLegalAgent
    from palaestra.core.registry import make
    from palaestra.rollout.episode import play_episode

    llm = FakeLLM()
    engine = engine_for(tiny_folder, llm)
    end = engine.renderer.turn_end_ids[:1]
    llm.replies.extend([(engine.renderer.encode(move) + end, "stop") for move in "97531"])

    async def main() -> Any:
        return await play_episode(
            make("tic_tac_toe-v0"),
            {"player_0": LLMAgent(engine, temperature=1.0), "player_1": FirstLegalAgent()},
            episode_id="e",
            seed=0,
            env_id="tic_tac_toe-v0",
            agent_specs={"player_0": "llm:vllm", "player_1": "first"},
        )

    episode = asyncio.run(main())
    assert episode.status == "ok", episode.cause
    mine = episode.player_turns("player_0")
    assert [turn.action for turn in mine][:2] == ["9", "7"]
    assert all(turn.generation is not None and turn.generation.logprobs for turn in mine)
    engine.shutdown()


def test_the_spec_says_how_to_get_vllm_when_it_is_missing(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from palaestra.models.registry import build_model, parse_model_spec

    assert parse_model_spec(f"vllm:{tiny_folder}").kind == "vllm"
    with pytest.raises(ValueError, match=r"no config\.json"):
        parse_model_spec("vllm:/nowhere/at/all")
    monkeypatch.setitem(sys.modules, "vllm", None)  # an import of vllm now fails
    with pytest.raises(ValueError, match=r"pip install 'palaestra\[vllm\]'") as caught:
        build_model(f"vllm:{tiny_folder}")
    assert "\n" not in str(caught.value)


def test_without_a_gpu_the_engine_refuses_in_one_line(
    fake_vllm: Any, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from palaestra.models.vllm_engine import VLLMEngine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA GPU"):
        VLLMEngine(tiny_folder)


def test_ray_workers_host_vllm_engines_and_load_weights_into_them(fake_vllm: Any, tiny_folder: Path) -> None:
    """The Ray worker's hosted-model path with the vLLM backend (the worker class run in process)."""
    import torch
    from transformers import AutoModelForCausalLM

    from palaestra.rollout.ray_executor import HostedModelSpec, RolloutWorker, hosted_model

    worker = RolloutWorker(0)
    worker.host(
        "policy", HostedModelSpec(str(tiny_folder), {"llm": FakeLLM(), "batch_wait_s": 0.0}, backend="vllm")
    )
    engine = hosted_model("policy")
    assert engine.name.startswith("vllm:")
    state = AutoModelForCausalLM.from_pretrained(tiny_folder).state_dict()
    assert asyncio.run(worker.load_weights("policy", state, 3)) == 3
    assert worker.weight_versions() == {"policy": 3}
    loaded = dict(engine.llm.workers[0].model_runner.model.loaded)
    assert loaded.keys() == state.keys() and torch.equal(loaded["lm_head.weight"], state["lm_head.weight"])
    asyncio.run(worker.close())


# ----- the real thing ---------------------------------------------------------------------------
def test_real_vllm_generates_token_exact_sessions(tiny_folder: Path) -> None:
    pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from palaestra.models.vllm_engine import VLLMEngine

    engine = VLLMEngine(tiny_folder, gpu_memory_utilization=0.3, enforce_eager=True)

    async def main() -> tuple[Any, Any]:
        first = await engine.generate(
            GenerationRequest("s", [user("Legal: 1,2\nX|2|3")], SamplingParams(seed=1))
        )
        second = await engine.generate(GenerationRequest("s", [user("Legal: 2")], SamplingParams(seed=2)))
        return first, second

    first, second = asyncio.run(main())
    assert first.logprobs is not None and len(first.logprobs) == len(first.token_ids)
    assert engine.session_ids("s")[: len(first.prompt_ids)] == first.prompt_ids
    assert second.session_turn == 1
    engine.shutdown()
