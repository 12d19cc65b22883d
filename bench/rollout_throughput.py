"""Rollout throughput: tic-tac-toe self-play with the tiny model, local engine vs a naive baseline,
in one run; plus turns/s of the episode runner with the mock model.

- engine: `LocalEngine` (continuous batching of all sessions into one forward pass per step, each
  session's KV cache kept between its turns so a turn prefills only its new tokens).
- naive: one `model.generate` per turn over the whole conversation, re-rendered from text and
  re-tokenized every turn, one call at a time (what a straightforward agent loop does).

Both play `--episodes` concurrent self-play episodes (`play_episode` + `asyncio.gather`) with the
same agent: `LLMAgent` with the tiny model's compact prompt template, sampling at temperature 1,
in two memory modes: `session` (one model conversation per episode and seat, each turn extending
it: the engine reuses the KV cache, the naive baseline re-reads the whole history) and `turn` (a
fresh conversation every turn, `LLMAgent`'s default for the compact template: batching only).
An untrained model's answers are mostly not legal moves, and tic-tac-toe ends the game at the
first invalid move, so the bench agent maps an illegal answer to a legal move (by a hash of the
text): games then run to their end (5-9 turns) and later turns exercise the cache. Rounds
alternate engine and naive so that a change in machine load hits both alike.

`torch` intra-op threads default to 1 here: on a CPU shared with other work, more threads than
free cores can make each small forward pass many times slower (see `LocalEngine(threads=...)`).

Targets (from the issue): engine >= 8x naive episodes/s; mock runner >= 20,000 turns/s.

Run: .venv/bin/python bench/rollout_throughput.py [--episodes 64] [--rounds 2] [--threads 1]
     [--device auto] [--mock-episodes 2000] [--memory session,turn]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from palaestra.agents.base import AgentView, Decision
from palaestra.agents.llm import LLMAgent
from palaestra.core.records import Episode, Generation
from palaestra.core.registry import make
from palaestra.models.base import GenerationRequest, Model
from palaestra.models.local import LocalEngine, message_to_template
from palaestra.models.mock import MockModel
from palaestra.rollout.episode import play_episode

ENV_ID = "tic_tac_toe-v0"
ENGINE_TARGET = 8.0
MOCK_TARGET = 20_000.0


class LenientAgent:
    """An `LLMAgent` whose illegal answers become a legal move chosen by a hash of the text."""

    def __init__(self, model: Model, memory: str) -> None:
        self.inner = LLMAgent(model, template="compact", temperature=1.0, memory=memory)

    async def act(self, view: AgentView) -> Decision:
        decision = await self.inner.act(view)
        legal = list(view.legal_actions or ())
        answer = str(decision.action).strip()
        if legal and answer not in legal:
            text = decision.generation.text if decision.generation is not None else answer
            chosen = legal[zlib.crc32(text.encode()) % len(legal)]
            return Decision(action=chosen, generation=decision.generation, info={"lenient": True})
        return decision

    async def close(self) -> None:
        await self.inner.close()


class NaiveGenerateModel:
    """The baseline `Model`: the session's whole conversation, rendered to text and tokenized
    afresh, fed to `model.generate` every turn; calls run one at a time and nothing is cached."""

    name = "naive-generate"

    def __init__(self, path: Path, device: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    async def generate(self, request: GenerationRequest) -> Generation:
        key = request.session or ""
        history = self.histories.setdefault(key, [])
        history.extend(message_to_template(m) for m in request.messages)
        generation = await asyncio.to_thread(self._generate, history, request)
        history.append({"role": "assistant", "content": generation.text})
        return generation

    def _generate(self, history: list[dict[str, Any]], request: GenerationRequest) -> Generation:
        import torch

        sampling = request.sampling
        with self._lock, torch.inference_mode():
            text = self.tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
            inputs = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").to(self.device)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = self.model.generate(
                **inputs,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_ids = output[0, inputs["input_ids"].shape[1] :].tolist()
        return Generation(
            text=self.tokenizer.decode(new_ids, skip_special_tokens=True),
            prompt_ids=inputs["input_ids"][0].tolist(),
            token_ids=new_ids,
            finish_reason="stop" if new_ids and new_ids[-1] == self.tokenizer.eos_token_id else "length",
            model=self.name,
        )

    async def end_session(self, session: str) -> None:
        self.histories.pop(session, None)

    async def close(self) -> None:
        self.histories.clear()


@dataclass
class Tally:
    episodes: int = 0
    turns: int = 0
    errors: int = 0
    seconds: float = 0.0

    def add(self, episodes: list[Episode], seconds: float) -> None:
        self.episodes += len(episodes)
        self.turns += sum(len(e.turns) for e in episodes)
        self.errors += sum(e.status != "ok" for e in episodes)
        self.seconds += seconds


async def play_wave(
    model: Model, count: int, first_seed: int, label: str, memory: str
) -> tuple[list[Episode], float]:
    """`count` concurrent self-play episodes; both seats share `model`."""

    async def one(index: int) -> Episode:
        env = make(ENV_ID)
        agents = {player: LenientAgent(model, memory) for player in env.players}
        try:
            return await play_episode(
                env,
                agents,
                episode_id=f"{label}-{index:06d}",
                seed=first_seed + index,
                env_id=ENV_ID,
                agent_specs=dict.fromkeys(env.players, f"llm:{label}"),
            )
        finally:
            for agent in agents.values():
                await agent.close()

    started = time.perf_counter()
    episodes = await asyncio.gather(*(one(i) for i in range(count)))
    return list(episodes), time.perf_counter() - started


async def mock_turns(total: int, concurrency: int) -> Tally:
    """The runner's own speed: episodes with `LLMAgent` over `MockModel`, `concurrency` at a time."""
    model = MockModel()
    gate = asyncio.Semaphore(concurrency)
    tally = Tally()

    async def one(index: int) -> Episode:
        async with gate:
            env = make(ENV_ID)
            agents = {player: LLMAgent(model) for player in env.players}
            episode = await play_episode(
                env,
                agents,
                episode_id=f"mock-{index:06d}",
                seed=index,
                env_id=ENV_ID,
                agent_specs=dict.fromkeys(env.players, "llm:mock"),
            )
            for agent in agents.values():
                await agent.close()
            return episode

    started = time.perf_counter()
    episodes = await asyncio.gather(*(one(i) for i in range(total)))
    tally.add(list(episodes), time.perf_counter() - started)
    return tally


async def main_async(args: argparse.Namespace) -> None:
    import torch

    from palaestra.models.tiny import default_tiny_path

    torch.set_num_threads(args.threads)
    path = Path(args.model) if args.model else default_tiny_path()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    engine = LocalEngine(path, device=device, max_batch_size=args.episodes * 2)
    naive = NaiveGenerateModel(path, device)
    console = Console(width=120)
    console.print(f"model {path} on {device}, torch threads {torch.get_num_threads()}")

    # Warm-up (not timed): first calls pay for lazy initialisation.
    await play_wave(engine, 4, 10_000, "engine", "session")
    await play_wave(naive, 2, 10_000, "naive", "session")

    memories = [m.strip() for m in args.memory.split(",") if m.strip()]
    tallies: dict[tuple[str, str], Tally] = {}
    reuse: dict[str, float] = {}
    for memory in memories:
        before = engine.stats()
        for round_index in range(args.rounds):
            for label, model in (("engine", engine), ("naive", naive)):
                seed = round_index * args.episodes
                episodes, seconds = await play_wave(model, args.episodes, seed, label, memory)
                tallies.setdefault((label, memory), Tally()).add(episodes, seconds)
                turns = sum(len(e.turns) for e in episodes)
                console.print(f"{memory} round {round_index + 1} {label}: {seconds:.2f}s, {turns} turns")
        after = engine.stats()
        reused = after.reused_tokens - before.reused_tokens
        reuse[memory] = reused / max(1, reused + after.prefilled_tokens - before.prefilled_tokens)
    stats = engine.stats()
    await engine.close()
    await naive.close()

    mock = await mock_turns(args.mock_episodes, args.episodes)

    table = Table(title=f"{args.episodes} concurrent {ENV_ID} self-play episodes, tiny model ({device})")
    columns = (
        "backend",
        "memory",
        "episodes",
        "turns",
        "errors",
        "seconds",
        "episodes/s",
        "turns/s",
        "vs naive",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "memory") else "right")
    speedups: dict[str, float] = {}
    for (label, memory), tally in tallies.items():
        rate = tally.episodes / tally.seconds
        naive_tally = tallies[("naive", memory)]
        speedup = rate / (naive_tally.episodes / naive_tally.seconds)
        if label == "engine":
            speedups[memory] = speedup
        table.add_row(
            label,
            memory,
            str(tally.episodes),
            str(tally.turns),
            str(tally.errors),
            f"{tally.seconds:.2f}",
            f"{rate:.1f}",
            f"{tally.turns / tally.seconds:.0f}",
            f"{speedup:.1f}x",
        )
    table.add_row(
        "mock runner",
        "session",
        str(mock.episodes),
        str(mock.turns),
        str(mock.errors),
        f"{mock.seconds:.2f}",
        f"{mock.episodes / mock.seconds:.0f}",
        f"{mock.turns / mock.seconds:.0f}",
        "",
    )
    console.print(table)
    console.print(
        f"engine: {stats.prefill_forwards} prefill + {stats.decode_forwards} decode forwards for "
        f"{stats.sampled_tokens} sampled tokens; prompt tokens read from kept caches: "
        + ", ".join(f"{share:.0%} ({memory})" for memory, share in reuse.items())
    )
    for memory, speedup in speedups.items():
        verdict = "ok" if speedup >= ENGINE_TARGET else "MISSED"
        console.print(
            f"engine vs naive ({memory} memory): {speedup:.1f}x (target >= {ENGINE_TARGET:g}x) {verdict}"
        )
    mock_rate = mock.turns / mock.seconds
    verdict = "ok" if mock_rate >= MOCK_TARGET else "MISSED"
    console.print(f"mock runner: {mock_rate:,.0f} turns/s (target >= {MOCK_TARGET:,.0f}) {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--episodes", type=int, default=64, help="concurrent episodes per wave")
    parser.add_argument("--rounds", type=int, default=2, help="timed waves per backend")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--model", default=None, help="model folder (default: the embedded tiny model)")
    parser.add_argument("--mock-episodes", type=int, default=2000, help="episodes for the mock runner")
    parser.add_argument("--memory", default="session,turn", help="LLMAgent memory modes to compare")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
