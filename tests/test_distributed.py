"""Multi-process updates: two CPU processes (gloo) through `accelerate`, each scoring its half of a
batch with palaestra's own `token_logprobs` + `ppo_objective`, end with the gradient that one
process gets on the whole batch.

The halves are deliberately uneven (different row and token counts) and share prompts (so the
prefix-sharing forward runs inside DDP's forward).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("accelerate")

from palaestra.train.distributed import AccelerateDistributed, Distributed, dummy_row
from palaestra.train.forward import TrainBatch, TrainRow, token_logprobs
from palaestra.train.losses import ppo_objective

AGGREGATIONS = ("token-mean", "sequence-mean")


def make_rows(seed: int, vocab: int) -> list[TrainRow]:
    rng = random.Random(seed)
    prompts = [tuple(rng.randrange(vocab) for _ in range(rng.randrange(4, 9))) for _ in range(3)]
    rows = []
    for index in range(11):
        prompt = prompts[index % len(prompts)]
        reply = tuple(rng.randrange(vocab) for _ in range(rng.randrange(1, 6)))
        rows.append(TrainRow(prompt + reply, (0,) * len(prompt) + (1,) * len(reply), prefix_group=prompt))
    return rows


def inputs_for(rows: list[TrainRow], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-target advantages and old log-probs, fixed by the row's content (the same in every process)."""
    advantages, old = [], []
    for row in rows:
        rng = random.Random(hash((seed, row.token_ids)) & 0xFFFF_FFFF)
        for flag in row.loss_mask:
            if flag:
                advantages.append(rng.uniform(-1.5, 1.5))
                old.append(rng.uniform(-6.0, -2.0))
    return torch.tensor(advantages), torch.tensor(old)


def loss_on(
    dist: Distributed,
    scorer: Any,
    rows: list[TrainRow],
    aggregation: str,
    *,
    normalize: bool = True,
    count: float | None = None,
) -> torch.Tensor:
    """The PPO loss of `rows`; `count` overrides the local count of loss tokens (or sequences)."""
    scored = dist.score(scorer, TrainBatch.from_rows(rows), with_entropy=True)
    advantages, old = inputs_for(rows, 0)
    if count is None:
        count = float(scored.logprobs.numel() if aggregation == "token-mean" else len(rows))
    loss, _ = ppo_objective(
        scored.logprobs,
        old,
        advantages,
        torch.ones_like(scored.logprobs),
        entropy=scored.entropy,
        entropy_coef=0.01,
        aggregation=aggregation,  # type: ignore[arg-type]
        normalizer=dist.normalizer(count) if normalize else None,
        segment_ids=scored.row_index,
    )
    return loss


def gradients(model: Any) -> dict[str, torch.Tensor]:
    return {
        name: parameter.grad.detach().clone()
        for name, parameter in model.named_parameters()
        if parameter.grad is not None
    }


def _join_gloo_group(rank: int, port: int) -> None:
    """The environment torch.distributed reads for a 2-process gloo group on 127.0.0.1."""
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "GLOO_SOCKET_IFNAME": "lo",
        }
    )


def _worker(rank: int, port: int, folder: str, out: str, split: int) -> None:
    _join_gloo_group(rank, port)
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM

    dist = Distributed.from_environment(cpu=True)
    assert isinstance(dist, AccelerateDistributed) and dist.world_size == 2 and dist.rank == rank
    model = AutoModelForCausalLM.from_pretrained(folder).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scorer, optimizer = dist.prepare(model, optimizer)
    rows = make_rows(1, model.config.vocab_size)
    mine = rows[:split] if rank == 0 else rows[split:]
    results: dict[str, Any] = {"rank": rank}
    for aggregation in AGGREGATIONS:
        for normalize in (True, False):
            optimizer.zero_grad(set_to_none=True)
            dist.backward(loss_on(dist, scorer, mine, aggregation, normalize=normalize))
            results[f"{aggregation}/{normalize}"] = gradients(model)
    # A process with nothing to train on joins the all-reduce through a zero-weight dummy row.
    optimizer.zero_grad(set_to_none=True)
    if rank == 0:
        dist.backward(loss_on(dist, scorer, rows, "token-mean"))
    else:
        # It counts no tokens towards the batch-wide normalizer.
        dist.backward(loss_on(dist, scorer, [dummy_row()], "token-mean", count=0.0) * 0.0)
    results["dummy"] = gradients(model)
    results["sum"] = dist.sum(rank + 1.0)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.barrier()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from palaestra.models.tiny import init_tiny_model

    return init_tiny_model(
        tmp_path_factory.mktemp("tiny") / "model",
        seed=4,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )


@pytest.fixture(scope="module")
def two_process_gradients(
    model_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("grads")
    mp.start_processes(
        _worker, args=(free_port(), str(model_folder), str(out), 4), nprocs=2, start_method="spawn", join=True
    )
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


def single_process_gradients(
    model_folder: Path, rows: list[TrainRow], aggregation: str
) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_folder).train()
    loss_on(Distributed(), model, rows, aggregation).backward()
    return gradients(model)


def assert_same(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert found.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.allclose(found[name], value, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_two_processes_get_the_whole_batch_gradient(
    aggregation: str, model_folder: Path, two_process_gradients: list[dict[str, Any]]
) -> None:
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model_folder).vocab_size
    rows = make_rows(1, vocab)
    first, second = rows[:4], rows[4:]
    assert sum(map(len, (r.token_ids for r in first))) != sum(map(len, (r.token_ids for r in second)))
    expected = single_process_gradients(model_folder, rows, aggregation)
    for result in two_process_gradients:
        assert_same(result[f"{aggregation}/True"], expected)
    # Without the batch-wide normalizer, DDP's average of the two halves' means is a different
    # gradient: the normalizer is what makes the halves add up.
    unnormalized = two_process_gradients[0][f"{aggregation}/False"]
    assert any(not torch.allclose(unnormalized[n], v, rtol=1e-4, atol=1e-6) for n, v in expected.items())


def test_a_process_without_rows_still_meets_the_others(
    model_folder: Path, two_process_gradients: list[dict[str, Any]]
) -> None:
    from transformers import AutoConfig

    rows = make_rows(1, AutoConfig.from_pretrained(model_folder).vocab_size)
    whole = single_process_gradients(model_folder, rows, "token-mean")
    # Rank 0 scored the whole batch with normalizer total/2 while rank 1 added zero: the average
    # over the two processes is the whole batch's gradient.
    for result in two_process_gradients:
        assert result["rank"] in (0, 1)
        assert_same(result["dummy"], whole)
        assert result["sum"] == 3.0


def test_single_process_stand_in_changes_nothing(model_folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    dist = Distributed.from_environment()
    assert not dist.active and dist.is_main and dist.normalizer(12.0) is None
    model = AutoModelForCausalLM.from_pretrained(model_folder)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scorer, same = dist.prepare(model, optimizer)
    assert scorer is model and same is optimizer
    rows = make_rows(2, model.config.vocab_size)
    direct = token_logprobs(model, rows).logprobs
    assert torch.equal(dist.score(scorer, TrainBatch.from_rows(rows)).logprobs, direct)


# ----- the trainer under two processes ------------------------------------------------------------
def _train_worker(rank: int, port: int, out: str, results: str, critic: bool) -> None:
    _join_gloo_group(rank, port)
    from palaestra.train.config import parse_config
    from palaestra.train.trainer import Trainer

    overrides = {
        "train.out": out,
        "train.steps": 2,
        "train.checkpoint_every": 2,
        "train.threads": 1,
        "model.device": "cpu",
        "model.hidden_size": 32,
        "model.intermediate_size": 64,
        "sft.steps": 1,
        "sft.episodes": 6,
        "sft.batch_rows": 8,
        "rollout.episodes_per_step": 8,
        "rollout.snapshot_every": 1,
        "algorithm.minibatches": 2,
        "eval.every": 0,
        "eval.final_episodes": 2,
        "eval.episodes": 2,
        "eval.opponents": {"tic_tac_toe-v0": ["random"]},
    }
    if critic:
        overrides.update({"algorithm.value_coef": 0.5, "algorithm.estimator_options": {"gae_lambda": 0.9}})
    trainer = Trainer(parse_config({}, overrides))
    result = trainer.run()
    assert trainer.dist.world_size == 2 and trainer.dist.rank == rank
    weights = dict(trainer.policy.state_dict())
    if trainer.value_head is not None:
        weights.update({f"value_head.{k}": v for k, v in trainer.value_head.state_dict().items()})
    torch.save(
        {"steps": result.steps_done, "weights": weights, "final": result.final_model},
        Path(results) / f"rank{rank}.pt",
    )


@pytest.mark.slow
@pytest.mark.parametrize("critic", [False, True])
def test_the_trainer_runs_under_two_processes_with_weights_in_step(tmp_path: Path, critic: bool) -> None:
    """Each process plays its own games; the update's all-reduce keeps the weights identical (the
    critic's value head too), and only the main process writes the run folder."""
    import json

    import torch.multiprocessing as mp

    out, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    mp.start_processes(
        _train_worker,
        args=(free_port(), str(out), str(results), critic),
        nprocs=2,
        start_method="spawn",
        join=True,
    )
    ranks = [torch.load(results / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    assert [r["steps"] for r in ranks] == [2, 2]
    assert any(name.startswith("value_head.") for name in ranks[0]["weights"]) == critic
    assert ranks[0]["final"] == out / "final" and ranks[1]["final"] is None
    for name, value in ranks[0]["weights"].items():
        assert torch.equal(value, ranks[1]["weights"][name]), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["phase"] == "rl"] == [1, 2]
