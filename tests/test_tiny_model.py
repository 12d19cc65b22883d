"""The embedded tiny model: tokenizer round trip through AutoTokenizer, chat template, deterministic init."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from palaestra.models.tiny import (
    CHARACTERS,
    END_OF_TURN,
    ROLE_TOKENS,
    SPECIAL_TOKENS,
    TINY_VERSION,
    default_tiny_path,
    init_tiny_model,
    tiny_vocabulary,
)

ASCII_TEXT = st.text(alphabet=st.sampled_from(CHARACTERS), max_size=200)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(model_dir)


def _weights_digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_autotokenizer_loads_a_plain_fast_tokenizer(tokenizer: PreTrainedTokenizerFast) -> None:
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert "Qwen" not in type(tokenizer).__name__
    assert len(tokenizer) == len(tiny_vocabulary())
    assert tokenizer.eos_token == END_OF_TURN
    assert tokenizer.convert_tokens_to_ids(END_OF_TURN) == tiny_vocabulary()[END_OF_TURN]


@settings(max_examples=200, deadline=None)
@given(text=ASCII_TEXT)
def test_text_round_trips_one_token_per_character(tokenizer: PreTrainedTokenizerFast, text: str) -> None:
    # Literal marker text such as "<|end|>" is read as the special token, as in every HF tokenizer.
    assume(not any(token in text for token in SPECIAL_TOKENS))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # whitespace included: nothing dropped, nothing merged
    assert tokenizer.decode(ids) == text


def test_whitespace_survives_exactly(tokenizer: PreTrainedTokenizerFast) -> None:
    text = "  X | 2 | 3\n---------\n\t4 | O | 6  \n\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_characters_outside_the_vocabulary_become_unknown(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = tokenizer("a\u00e9b", add_special_tokens=False)["input_ids"]
    assert ids == [tiny_vocabulary()["a"], tokenizer.unk_token_id, tiny_vocabulary()["b"]]


def test_chat_template_concatenates_messages_and_ends_with_the_generation_prompt(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    conversation = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": " 1|2|3 \n"},
        {"role": "assistant", "content": "5"},
        {"role": "user", "content": "Legal: 1,2"},
    ]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert (
        rendered == "<|system|>sys<|end|><|user|> 1|2|3 \n<|end|><|assistant|>5<|end|>"
        "<|user|>Legal: 1,2<|end|><|assistant|>"
    )
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    # The conversation's ids are exactly its messages' ids in a row: deltas never overlap.
    pieces = [
        tokenizer.apply_chat_template([message], tokenize=False, add_generation_prompt=False)
        for message in conversation
    ]
    piece_ids = [tokenizer(piece, add_special_tokens=False)["input_ids"] for piece in pieces]
    expected = [i for piece in piece_ids for i in piece]
    assert ids == [*expected, tokenizer.convert_tokens_to_ids(ROLE_TOKENS["assistant"])]
    assert tokenizer.decode(ids) == rendered
    # Each role marker and the end-of-turn marker are single special tokens.
    assert ids.count(tokenizer.convert_tokens_to_ids(END_OF_TURN)) == 4


@settings(max_examples=50, deadline=None)
@given(user=ASCII_TEXT, reply=ASCII_TEXT)
def test_assistant_turn_ids_are_reply_ids_plus_end(
    tokenizer: PreTrainedTokenizerFast, user: str, reply: str
) -> None:
    assume(not any(token in user + reply for token in SPECIAL_TOKENS))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": reply}], tokenize=False
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"]
    assert full_ids == [*prompt_ids, *reply_ids, tokenizer.eos_token_id]


def test_model_loads_as_a_llama_causal_lm_and_generates(
    model_dir: Path, tokenizer: PreTrainedTokenizerFast
) -> None:
    import torch

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    parameters = sum(p.numel() for p in model.parameters())
    assert 50_000 <= parameters <= 3_000_000
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "1|2|3\nLegal: 1,2,3"}], tokenize=False, add_generation_prompt=True
    )
    input_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids).logits
        out = model.generate(input_ids, max_new_tokens=4, do_sample=False)
    assert logits.shape == (1, input_ids.shape[1], len(tokenizer))
    assert out.shape[1] <= input_ids.shape[1] + 4
    assert out[0, : input_ids.shape[1]].tolist() == input_ids[0].tolist()


def test_config_records_its_origin_and_template(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["palaestra"] == {
        "family": "tiny",
        "version": TINY_VERSION,
        "seed": 0,
        "prompt_template": "compact",
    }
    assert (model_dir / "README.md").read_text().startswith("# palaestra tiny model")


def test_same_seed_same_weights_other_seed_other_weights(model_dir: Path, tmp_path: Path) -> None:
    again = init_tiny_model(tmp_path / "again", seed=0)
    other = init_tiny_model(tmp_path / "other", seed=1)
    assert _weights_digest(again) == _weights_digest(model_dir)
    assert _weights_digest(other) != _weights_digest(model_dir)


def test_init_leaves_the_global_torch_rng_alone(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    init_tiny_model(tmp_path / "m", seed=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    assert torch.equal(torch.rand(3), expected)


def test_size_overrides_reach_the_config(tmp_path: Path) -> None:
    folder = init_tiny_model(
        tmp_path / "m",
        seed=3,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 1)
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 2)
    assert model.config.intermediate_size == 64


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "multiple of num_attention_heads"),
        ({"num_hidden_layers": 0}, "positive integer"),
        ({"num_attention_heads": 4, "num_key_value_heads": 3}, "multiple of num_key_value_heads"),
    ],
)
def test_bad_sizes_are_refused_in_one_line(tmp_path: Path, overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        init_tiny_model(tmp_path / "m", **overrides)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "m").exists()


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        init_tiny_model(tmp_path, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    init_tiny_model(tmp_path, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, overwrite=True)
    assert (tmp_path / "config.json").is_file()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache"


def test_default_model_is_built_once_into_the_cache(cache_dir: Path, model_dir: Path) -> None:
    path = default_tiny_path()
    assert path == cache_dir / "models" / f"tiny-v{TINY_VERSION}"
    assert _weights_digest(path) == _weights_digest(model_dir)  # seed 0, default sizes
    built_at = (path / "model.safetensors").stat().st_mtime_ns
    assert default_tiny_path() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == built_at
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp folders left


def test_a_broken_cached_folder_is_rebuilt(cache_dir: Path) -> None:
    broken = cache_dir / "models" / f"tiny-v{TINY_VERSION}"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    path = default_tiny_path()
    assert path == broken
    assert json.loads((path / "config.json").read_text())["palaestra"]["family"] == "tiny"


def test_importing_model_modules_does_not_import_torch() -> None:
    code = (
        "import sys, palaestra.models.tiny, palaestra.models.mock, palaestra.models.registry, "
        "palaestra.agents.llm; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ}
    )
    assert result.stdout.strip() == "[]"
