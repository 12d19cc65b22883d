"""palaestra.train.forward: the fast log-probs equal the plain full forward, values and gradients.

Every saving (head only at targets, shared prefixes through an expanded KV cache, length buckets)
is checked against `naive_token_logprobs` (full logits of one padded batch) on the same weights:
log-probs, entropies and the gradient of every parameter.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from palaestra.core.records import Generation  # noqa: E402
from palaestra.models.tiny import init_tiny_model  # noqa: E402
from palaestra.train.forward import (  # noqa: E402
    TrainBatch,
    TrainRow,
    _buckets,
    minibatch_indices,
    naive_token_logprobs,
    token_logprobs,
)

VOCAB_LOW = 7  # the tiny vocabulary's first non-special id
ATOL = 2e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: on a shared 2-core machine two OpenMP threads mostly wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_tiny_model(
        tmp_path_factory.mktemp("tiny"),
        seed=3,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention: the cache holds fewer heads than the queries
    )


@pytest.fixture(scope="module")
def model(tiny_folder: Path) -> Any:
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32)
    loaded.train()
    return loaded


def random_ids(rng: random.Random, length: int, vocab: int = 104) -> list[int]:
    return [rng.randrange(VOCAB_LOW, vocab) for _ in range(length)]


def grpo_rows(
    rng: random.Random,
    prompts: int,
    group_size: int,
    prompt_lengths: Sequence[int],
    completion_lengths: Sequence[int],
) -> list[TrainRow]:
    rows = []
    for group in range(prompts):
        prompt = random_ids(rng, prompt_lengths[group % len(prompt_lengths)])
        for member in range(group_size):
            length = completion_lengths[(group * group_size + member) % len(completion_lengths)]
            completion = random_ids(rng, length)
            rows.append(TrainRow(prompt + completion, [0] * len(prompt) + [1] * length, group))
    return rows


def scored_and_gradients(
    model: Any, score: Callable[..., Any], rows: Any, *, temperature: float = 1.0
) -> tuple[Any, dict[str, Any]]:
    model.zero_grad(set_to_none=True)
    out = score(model, rows, temperature=temperature, with_entropy=True)
    weights = torch.linspace(-1.0, 2.0, out.logprobs.numel())
    # Random-looking weights on each log-prob and on the entropy: every entry's gradient counts.
    ((out.logprobs * weights).sum() + 0.3 * (out.entropy * weights.flip(0)).sum()).backward()
    gradients = {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()}
    return out, gradients


def assert_matches_naive(model: Any, rows: Any, *, temperature: float = 1.0) -> Any:
    fast, fast_gradients = scored_and_gradients(model, token_logprobs, rows, temperature=temperature)
    plain_rows = rows.rows if isinstance(rows, TrainBatch) else rows
    plain, plain_gradients = scored_and_gradients(
        model, naive_token_logprobs, plain_rows, temperature=temperature
    )
    assert fast.logprobs.shape == plain.logprobs.shape
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(fast.entropy, plain.entropy, atol=ATOL, rtol=1e-5)
    assert torch.equal(fast.row_index, plain.row_index)
    assert torch.equal(fast.positions, plain.positions)
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(fast_gradients[name], gradient, atol=ATOL, rtol=1e-4, msg=name)
    # Not vacuous: the gradient is non-zero somewhere.
    assert any(gradient.abs().sum() > 0 for gradient in plain_gradients.values())
    return fast


# ------------------------------------------------------------------------------ agreement with naive


def test_grpo_groups_equal_lengths(model: Any) -> None:
    rows = grpo_rows(random.Random(0), prompts=3, group_size=4, prompt_lengths=[12], completion_lengths=[6])
    batch = TrainBatch.from_rows(rows)
    assert_matches_naive(model, batch)
    stats = batch.stats()
    # Each prompt once (3 x 12) plus each completion once (12 x 6), instead of 12 x 18.
    assert stats["computed_tokens"] == 3 * 12 + 12 * 6
    assert stats["naive_tokens"] == 12 * 18
    assert stats["head_rows"] == stats["targets"] == 12 * 6


def test_groups_with_different_prompt_and_completion_lengths(model: Any) -> None:
    rows = grpo_rows(
        random.Random(1),
        prompts=4,
        group_size=3,
        prompt_lengths=[5, 11, 8],
        completion_lengths=[1, 7, 3, 9, 2],
    )
    assert_matches_naive(model, rows)


def test_ungrouped_rows_of_different_lengths(model: Any) -> None:
    rng = random.Random(2)
    rows = []
    for length in [2, 9, 17, 4, 30, 30, 13]:
        mask = [0] + [int(rng.random() < 0.6) for _ in range(length - 1)]
        rows.append(TrainRow(random_ids(rng, length), mask))
    batch = TrainBatch.from_rows(rows, bucket_overhead_tokens=4)
    assert len(batch.passes) > 1  # buckets, not one padded batch
    assert_matches_naive(model, batch)


def test_multi_turn_rows_sharing_turns_and_targets_inside_the_prefix(model: Any) -> None:
    """Self-play rows from the same empty-board prompt whose first sampled turn also coincides: the
    shared prefix holds targets, which are scored once for the group."""
    rng = random.Random(3)
    prompt, first_move, reply = random_ids(rng, 6), random_ids(rng, 3), random_ids(rng, 4)
    rows = []
    for _ in range(3):
        second_move = random_ids(rng, rng.randrange(1, 5))
        ids = prompt + first_move + reply + second_move
        mask = [0] * 6 + [1] * 3 + [0] * 4 + [1] * len(second_move)
        rows.append(TrainRow(ids, mask, "game-0"))
    batch = TrainBatch.from_rows(rows)
    stats = batch.stats()
    assert stats["head_rows"] < stats["targets"]  # the first move's 3 targets are computed once, not 3 times
    assert_matches_naive(model, batch)


def test_mixed_batch_with_temperature(model: Any) -> None:
    rng = random.Random(4)
    rows = grpo_rows(rng, prompts=2, group_size=3, prompt_lengths=[7, 4], completion_lengths=[5, 2, 8])
    rows.append(TrainRow(random_ids(rng, 10), [0, 1, 1, 0, 1, 0, 0, 1, 1, 1]))
    rows.append(TrainRow(random_ids(rng, 6), [0, 0, 0, 1, 1, 1], prefix_group="alone"))  # singleton group
    rows.append(TrainRow(random_ids(rng, 5), [0, 0, 0, 0, 0]))  # nothing to score
    assert_matches_naive(model, rows, temperature=0.7)


def test_group_without_a_common_prefix_still_scores_correctly(model: Any) -> None:
    rng = random.Random(5)
    rows = [TrainRow([first, *random_ids(rng, 6)], [0] + [1] * 6, "same") for first in (10, 11, 12)]
    batch = TrainBatch.from_rows(rows)
    assert not batch.shares_prefixes
    assert_matches_naive(model, batch)


def test_identical_rows_in_a_group(model: Any) -> None:
    ids = random_ids(random.Random(6), 9)
    rows = [TrainRow(ids, [0, 0, 0, 0, 1, 1, 1, 1, 1], 0) for _ in range(3)]
    assert_matches_naive(model, rows)


@st.composite
def row_batches(draw: st.DrawFn) -> list[TrainRow]:
    rows: list[TrainRow] = []
    for group in range(draw(st.integers(1, 3))):
        prompt = draw(st.lists(st.integers(VOCAB_LOW, 103), min_size=1, max_size=10))
        for _ in range(draw(st.integers(1, 3))):
            tail = draw(st.lists(st.integers(VOCAB_LOW, 103), min_size=0, max_size=8))
            ids = prompt + tail
            mask = [0, *draw(st.lists(st.integers(0, 1), min_size=len(ids) - 1, max_size=len(ids) - 1))]
            grouped = draw(st.booleans())
            rows.append(TrainRow(ids, mask, group if grouped else None))
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=row_batches(), overhead=st.sampled_from([0, 16, 10**6]))
def test_any_batch_matches_naive(model: Any, rows: list[TrainRow], overhead: int) -> None:
    batch = TrainBatch.from_rows(rows, bucket_overhead_tokens=overhead)
    if batch.num_targets:
        assert_matches_naive(model, batch)


def embedded_tokens(model: Any, run: Callable[[], Any]) -> int:
    """How many token positions the backbone embedded while `run` ran."""
    counts: list[int] = []
    hook = model.get_input_embeddings().register_forward_hook(
        lambda _module, inputs, _output: counts.append(inputs[0].numel())
    )
    try:
        run()
    finally:
        hook.remove()
    return sum(counts)


def small_model(architecture: str) -> Any:
    torch.manual_seed(0)
    if architecture == "gpt2":  # learned absolute positions: suffix position ids must be right
        config = transformers.GPT2Config(
            vocab_size=104, n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=0, eos_token_id=0,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # dropout would make any two passes differ
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(config)
    sizes = {
        "vocab_size": 104, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
    }  # fmt: skip
    if architecture == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**sizes))
    # Sliding-window attention shorter than the prompts: its cache cannot be expanded row-wise.
    return transformers.MistralForCausalLM(transformers.MistralConfig(sliding_window=4, **sizes))


@pytest.mark.parametrize(("architecture", "shares"), [("qwen2", True), ("gpt2", True), ("mistral", False)])
def test_other_architectures(architecture: str, shares: bool) -> None:
    other = small_model(architecture)
    other.train()
    rows = grpo_rows(
        random.Random(7), prompts=2, group_size=3, prompt_lengths=[9, 6], completion_lengths=[4, 7, 2]
    )
    batch = TrainBatch.from_rows(rows)
    assert batch.shares_prefixes
    assert_matches_naive(other, batch)
    plan = batch if shares else batch.unshared()
    assert embedded_tokens(other, lambda: token_logprobs(other, batch)) == plan.stats()["computed_tokens"]


# ------------------------------------------------------------------------------ what actually runs


def test_prefix_runs_once_per_group(model: Any) -> None:
    rows = grpo_rows(random.Random(8), prompts=2, group_size=4, prompt_lengths=[20], completion_lengths=[5])
    embedded = embedded_tokens(model, lambda: token_logprobs(model, rows))
    assert embedded == 2 * 20 + 8 * 5
    assert embedded < sum(len(row.token_ids) for row in rows)


def test_gradient_checkpointing_falls_back_to_unshared_and_stays_exact(tiny_folder: Path) -> None:
    checkpointed = transformers.AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32)
    checkpointed.activation_checkpointing_enable()
    checkpointed.train()
    rows = grpo_rows(random.Random(9), prompts=2, group_size=3, prompt_lengths=[8], completion_lengths=[3, 5])
    batch = TrainBatch.from_rows(rows)
    assert_matches_naive(checkpointed, batch)
    # Under checkpointing the rows run whole; without grad the cache survives and sharing is back.
    unshared, shared = batch.unshared().stats()["computed_tokens"], batch.stats()["computed_tokens"]
    assert shared < unshared
    assert embedded_tokens(checkpointed, lambda: token_logprobs(checkpointed, batch)) == unshared
    with torch.no_grad():
        assert embedded_tokens(checkpointed, lambda: token_logprobs(checkpointed, batch)) == shared


def test_inference_mode_gives_the_same_values_without_graph(model: Any) -> None:
    rows = grpo_rows(random.Random(10), prompts=2, group_size=2, prompt_lengths=[6], completion_lengths=[4])
    batch = TrainBatch.from_rows(rows)
    with torch.inference_mode():
        frozen = token_logprobs(model, batch, with_entropy=True)
    live = token_logprobs(model, batch, with_entropy=True)
    assert not frozen.logprobs.requires_grad
    assert live.logprobs.requires_grad
    torch.testing.assert_close(frozen.logprobs, live.logprobs.detach())


def test_value_head_reads_the_hidden_state_that_scores_each_target(model: Any) -> None:
    """Shared prefixes and buckets give the value head the same input as one plain forward pass,
    and its gradient reaches the trunk."""
    rows = grpo_rows(
        random.Random(11), prompts=2, group_size=3, prompt_lengths=[7, 5], completion_lengths=[3, 1]
    )
    rows.append(TrainRow([10, 11, 12, 13, 14, 15], [0, 1, 0, 0, 1, 1]))  # two turns in one row
    head = torch.nn.Linear(model.config.hidden_size, 1)
    out = token_logprobs(model, TrainBatch.from_rows(rows), value_head=head)
    assert out.values is not None and out.values.shape == out.logprobs.shape
    expected = []
    with torch.no_grad():
        for row in rows:
            hidden = model.get_decoder()(input_ids=torch.tensor([row.token_ids])).last_hidden_state[0]
            expected += [head(hidden[t - 1]).item() for t, flag in enumerate(row.loss_mask) if flag]
    torch.testing.assert_close(out.values.detach(), torch.tensor(expected), atol=ATOL, rtol=1e-5)
    model.zero_grad(set_to_none=True)
    out.values.sum().backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert token_logprobs(model, rows).values is None


def test_all_masked_batch_backpropagates_zero(model: Any) -> None:
    rows = [TrainRow([10, 11, 12], [0, 0, 0]), TrainRow([13, 14], [0, 0], 1)]
    model.zero_grad(set_to_none=True)
    out = token_logprobs(model, rows, with_entropy=True)
    assert out.logprobs.numel() == 0
    assert out.entropy is not None and out.entropy.numel() == 0
    out.logprobs.sum().backward()  # must not raise: a trainer may hit a batch with nothing to learn
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert [t.numel() for t in out.per_row()] == [0, 0]


# ------------------------------------------------------------------------------ layouts and helpers


def test_layouts_follow_row_order_and_positions(model: Any) -> None:
    rows = [
        TrainRow([10, 11, 12, 13], [0, 1, 0, 1], "g"),
        TrainRow([20, 21, 22], [0, 0, 1]),
        TrainRow([10, 11, 12, 14, 15], [0, 0, 0, 1, 1], "g"),
    ]
    out = token_logprobs(model, rows)
    assert out.row_index.tolist() == [0, 0, 1, 2, 2]
    assert out.positions.tolist() == [1, 3, 2, 3, 4]
    per_row = out.per_row()
    assert [t.numel() for t in per_row] == [2, 1, 2]
    padded, scored = out.padded()
    assert padded.shape == scored.shape == (3, 5)
    assert scored.sum().item() == 5 and bool(scored[2, 4]) and not bool(scored[2, 0])
    torch.testing.assert_close(padded[0, 3], per_row[0][1])
    assert float(padded[1, 0].detach()) == 0.0
    assert (out.logprobs < 0).all()


def test_from_generations_concatenates_turns() -> None:
    turns = [
        Generation(text="ab", prompt_ids=[1, 2, 3], token_ids=[10, 11], loss_mask=[1, 1]),
        Generation(text="c", prompt_ids=[4], token_ids=[12, 2], loss_mask=[1, 0]),
        Generation(text="d", prompt_ids=[5, 6], token_ids=[13]),
    ]
    row = TrainRow.from_generations(turns, prefix_group=("tic_tac_toe", 7))
    assert row.token_ids == (1, 2, 3, 10, 11, 4, 12, 2, 5, 6, 13)
    assert row.loss_mask == (0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1)
    assert row.prefix_group == ("tic_tac_toe", 7)
    assert row.num_targets == 4


@pytest.mark.parametrize(
    ("ids", "mask", "message"),
    [
        ([], [], "at least one token"),
        ([1, 2], [0], "one flag per id"),
        ([1, 2], [0, 2], "only 0 and 1"),
        ([1, 2], [1, 1], "first token"),
        ([-1, 2], [0, 1], "non-negative"),
    ],
)
def test_bad_rows_are_refused(ids: list[int], mask: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainRow(ids, mask)


def test_bad_calls_are_refused(model: Any) -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        token_logprobs(model, [TrainRow([10, 500], [0, 1])])
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(model, [TrainRow([10, 11], [0, 1])], temperature=0.0)
    with pytest.raises(ValueError, match="at least one row"):
        TrainBatch.from_rows([])
    with pytest.raises(ValueError, match="TrainRow"):
        TrainBatch.from_rows([([1, 2], [0, 1])])  # type: ignore[list-item]


# ------------------------------------------------------------------------------ bucketing


def bucket_cost(lengths: Sequence[int], buckets: list[list[int]], overhead: int) -> int:
    return sum(len(bucket) * max(lengths[i] for i in bucket) + overhead for bucket in buckets)


def brute_force_cost(lengths: Sequence[int], overhead: int) -> int:
    ordered = sorted(lengths)
    best = None
    for cuts in itertools.product([False, True], repeat=max(len(ordered) - 1, 0)):
        total, start = 0, 0
        for index, cut in enumerate([*cuts, True]):
            if cut:
                total += (index + 1 - start) * ordered[index] + overhead
                start = index + 1
        best = total if best is None else min(best, total)
    return best or 0


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=8), overhead=st.integers(0, 60))
def test_buckets_partition_optimally(lengths: list[int], overhead: int) -> None:
    buckets = _buckets(lengths, overhead)
    assert sorted(i for bucket in buckets for i in bucket) == list(range(len(lengths)))
    assert bucket_cost(lengths, buckets, overhead) == brute_force_cost(lengths, overhead)


def test_bucket_extremes() -> None:
    lengths = [5, 3, 5, 9, 3]
    assert len(_buckets(lengths, 0)) == 3  # one per distinct length: no padding at all
    assert _buckets(lengths, 10**9) == [[1, 4, 0, 2, 3]]  # one padded call
    assert _buckets([], 5) == []


def test_plan_is_reusable_and_deterministic() -> None:
    rows = grpo_rows(
        random.Random(11), prompts=3, group_size=2, prompt_lengths=[4, 6], completion_lengths=[2, 5]
    )
    first, second = TrainBatch.from_rows(rows), TrainBatch.from_rows(rows)
    assert first.stats() == second.stats()
    assert np.array_equal(first.output_index, second.output_index)
    assert first.unshared().stats()["computed_tokens"] > first.stats()["computed_tokens"]
    assert first.unshared() is first.unshared()


def test_minibatches_keep_groups_whole_and_balance_tokens() -> None:
    rows = grpo_rows(random.Random(12), prompts=4, group_size=3, prompt_lengths=[10], completion_lengths=[5])
    rows += [TrainRow(list(range(7, 7 + length)), [0] * (length - 1) + [1]) for length in (40, 3, 3)]
    chunks = minibatch_indices(rows, 2, rng=random.Random(0))
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(rows)))
    for chunk in chunks:
        groups_here = {rows[i].prefix_group for i in chunk} - {None}
        for group in groups_here:  # every member of a group present here is in this chunk
            assert all(i in chunk for i, row in enumerate(rows) if row.prefix_group == group)
    loads = [sum(len(rows[i].token_ids) for i in chunk) for chunk in chunks]
    assert max(loads) - min(loads) <= 45  # greedy largest-first: within one group (45 tokens) of even
    assert minibatch_indices(rows, 1) == [list(range(len(rows)))]
    assert [] in minibatch_indices(rows[:3], 3)  # one group, three minibatches
    with pytest.raises(ValueError, match="minibatches"):
        minibatch_indices(rows, 0)
