"""The local engine `hf:PATH`: many sessions of a Hugging Face causal LM, batched, with KV reuse.

`LocalEngine(path)` implements `Model` for any full-attention causal LM folder that
`AutoModelForCausalLM` / `AutoTokenizer` load (the embedded tiny model included), on CPU or CUDA.

How a call flows:

- `await engine.generate(request)` renders only the request's new messages through the tokenizer's
  chat template (`ChatRenderer`) and queues a job. The session's context is always its previous
  ids + the sampled ids + the rendered delta: model tokens are never decoded and encoded again.
- One worker thread owns the model and does continuous batching: waiting jobs are prefilled
  together in one forward pass (oldest *session* first, as Continuum's program-level FCFS), and
  the batch then decodes one token per session per forward pass. Jobs are admitted once arrivals
  pause for `batch_wait_s`, or at once when as many requests came back as answers went out; while
  a batch decodes, a few newcomers wait for it (up to `_MAX_WAITS` windows) rather than cost
  forward passes of their own, since its rows will soon be back to share a prefill with them.
  A finished session is answered at once (its row rides along on padding until most of the batch
  is done); newly prefilled batches decode beside the running ones (the smallest are merged when
  there are too many). Answers go back to each caller's event loop in one wake-up per step, so
  any number of loops may share the engine.
- Each session's KV cache is kept between its turns, so a turn feeds only the new tokens (the
  last sampled token, forced end-of-turn ids, and the rendered delta), never the whole history.
  A batch keeps every layer's keys and values in one buffer (`_Store`), rows right-aligned: a
  row's context is contiguous and ends at the last column, padding is on the left, masked out
  by the 2D attention mask, and every token gets its true position id, so each row computes
  exactly what it would alone (up to float rounding). New tokens are written into the buffer in
  place (no concatenation per step), and a finished row's cache is kept as a view of it (copied
  out only if its session idles), so moving a context into the next turn's batch is one copy.
  On CPU a finished batch's buffer is reused once no kept cache views it: fresh memory costs a
  page fault per 4 KiB, about as much as writing it.
- Sessions with nothing kept whose contexts are identical (many episodes' same first prompt, a
  GRPO group's shared prompt) are computed once in their prefill and share the result.
- Memory bound: at most `max_cached_tokens` cached tokens are kept across idle sessions; beyond
  it the least recently used session's cache is dropped. A session idle longer than
  `session_ttl_s` (e.g. waiting on a slow tool or a person) loses its cache first. Only the
  cache is dropped: the token ids are always kept, and the next turn re-prefills from them, so
  results do not change. A kept cache that is still a view of its batch's buffer is copied out
  once its session has idled a sweep interval, so idle sessions do not hold whole batches.

Sampling: temperature 0 is greedy; otherwise softmax(logits / temperature), cut to the smallest
set of tokens holding `top_p` of the mass, sampled by inverse CDF with one uniform draw per token
from the request's own `random.Random(seed)` (so a request seed reproduces its tokens whatever
else is in the batch). Requests without a seed draw theirs from the engine's seeded stream.

Log-probs: `Generation.logprobs[i]` is `log_softmax(logits)[token_ids[i]]` of the model's raw
logits at temperature 1, before temperature and top-p: log pi_theta(token | context), exactly what
a trainer recomputes with a plain forward pass over the same ids.

Constrained replies (`SamplingParams.allowed`): each allowed text is encoded alone; at every step
the logits of tokens that extend no allowed text with the tokens sampled so far are set to -inf
(before greedy choice, temperature and top-p), and the end-of-turn token is allowed exactly when
the sampled tokens spell a whole allowed text. Greedy or sampled, the reply is always one of them;
with a temperature it is drawn from the model's distribution conditioned on the allowed set. The
returned log-probs stay the raw, unconstrained ones.

End of turn: the template's end-of-turn text (what it writes after an assistant message's
content, e.g. `<|im_end|>\\n`) is found once by rendering a probe conversation. Its first special
token, the tokenizer's EOS and the generation config's EOS ids stop a generation and are kept in
`token_ids` (loss mask 1). What the template writes after the sampled stop token, or the whole
end-of-turn text when a generation stops by length or a stop string, is appended as *forced* ids:
they open the next call's `prompt_ids` (loss mask 0), never `token_ids`.

After changing the weights in place (a training step), call `drop_caches()`: kept caches were
computed by the old weights.

Limits: models with sliding-window or linear-attention layers are refused (padding would shift
their windows); prompts are prefilled in one piece (no chunked prefill).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.core.messages import Message
from palaestra.core.records import Generation, trusted
from palaestra.models.base import GenerationRequest, ModelError, SamplingParams
from palaestra.models.tiny import quiet_transformers
from palaestra.models.worker_thread import WorkerThreadEngine

if TYPE_CHECKING:
    import torch
    from transformers import DynamicCache

__all__ = ["ChatRenderer", "EngineStats", "LocalEngine", "message_to_template"]

_REPLY_PROBE = "@@palaestra-reply-probe@@"
_KV_BUDGET_BYTES = 2 * 1024**3
"""Default KV memory for idle sessions when `max_cached_tokens` is not given."""
_SWEEP_INTERVAL_S = 0.25
_TRIM_MIN_COLUMNS = 64
_MAX_RUNNING_BATCHES = 4
"""Prefilled groups decode as separate batches (merging copies every cache) until there are more
than this many; then the two smallest are merged, bounding the forward passes per step."""
_MAX_RETIRED_STORES = 6
"""Finished batches' stores kept for their memory (see `LocalEngine._recycle`)."""
_MAX_WAITS = 15
"""A waiting request is admitted at the latest this many `batch_wait_s` windows after it came."""


def message_to_template(message: Message) -> dict[str, Any]:
    """A message as chat templates expect it (OpenAI-style dict)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.raw_arguments if call.raw_arguments is not None else call.arguments,
                },
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


_RENDER_CACHE_SIZE = 65_536


def _message_key(message: Message) -> tuple[Any, ...]:
    """Everything about a message a chat template can see, hashable."""
    calls = tuple(
        (c.id, c.name, repr(sorted(c.arguments.items())), c.raw_arguments) for c in message.tool_calls
    )
    return (message.role, message.content, message.name, calls, message.tool_call_id)


class ChatRenderer:
    """Renders message deltas through a tokenizer's chat template, for any HF template.

    `first(messages)` is the whole rendered prompt of a new conversation (generation prompt
    included). `after_reply(messages)` is what the template writes after an assistant reply's
    end-of-turn text: the new messages and the generation prompt. It is found by rendering a
    probe conversation ending in an assistant reply followed by the new messages and cutting
    after the reply's end-of-turn text, so templates that inject headers or default system
    prompts are handled. Each piece is tokenized on its own; with templates whose turns start
    with a special token (ChatML, Llama 3, the tiny model) that equals tokenizing the whole
    conversation.
    """

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "the tokenizer has no chat template; add one (chat_template.jinja or "
                "tokenizer_config.json) to the model folder"
            )
        self.tokenizer = tokenizer
        # The Rust tokenizer behind a fast tokenizer encodes ~15x quicker than the Python
        # wrapper's __call__ and gives the same ids for add_special_tokens=False.
        backend = (
            getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        )
        self._backend = backend
        self._render_lock = threading.Lock()
        self._rendered: OrderedDict[tuple[Any, ...], tuple[int, ...]] = OrderedDict()
        """Recently rendered deltas by their messages: games repeat prompts (the same board in
        many episodes), and rendering is a pure function of the messages."""
        self._probe = [
            {"role": "user", "content": "ping"},
            {"role": "assistant", "content": _REPLY_PROBE},
        ]
        probe_text = self.render_text(self._probe, add_generation_prompt=False)
        cut = probe_text.find(_REPLY_PROBE)
        if cut < 0:
            raise ValueError(
                "the chat template drops assistant message content; it cannot hold a conversation"
            )
        self.turn_end_text: str = probe_text[cut + len(_REPLY_PROBE) :]
        """What the template writes after an assistant reply's content (e.g. `<|im_end|>\\n`)."""
        self.turn_end_ids: list[int] = self.encode(self.turn_end_text)

    def render_text(self, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as exc:  # jinja raises anything; report it in one line
            raise ModelError(f"the chat template refused the messages: {type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise ModelError(f"the chat template returned {type(text).__name__}, not text")
        return text

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        if self._backend is not None:
            return list(self._backend.encode(text, add_special_tokens=False).ids)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _cached(self, kind: str, messages: Sequence[Message], render: Any) -> list[int]:
        key = (kind, *(_message_key(m) for m in messages))
        with self._render_lock:
            found = self._rendered.get(key)
            if found is not None:
                self._rendered.move_to_end(key)
                return list(found)
        ids = render(messages)
        with self._render_lock:
            self._rendered[key] = tuple(ids)
            if len(self._rendered) > _RENDER_CACHE_SIZE:
                self._rendered.popitem(last=False)
        return ids

    def first(self, messages: Sequence[Message]) -> list[int]:
        """The ids of a new conversation's prompt, generation prompt included."""
        return self._cached("first", messages, self._render_first)

    def after_reply(self, messages: Sequence[Message]) -> list[int]:
        """The ids that follow an assistant reply's end-of-turn: new messages + generation prompt."""
        return self._cached("after", messages, self._render_after_reply)

    def _render_first(self, messages: Sequence[Message]) -> list[int]:
        return self.encode(
            self.render_text([message_to_template(m) for m in messages], add_generation_prompt=True)
        )

    def _render_after_reply(self, messages: Sequence[Message]) -> list[int]:
        text = self.render_text(
            [*self._probe, *(message_to_template(m) for m in messages)], add_generation_prompt=True
        )
        rest = text[text.find(_REPLY_PROBE) + len(_REPLY_PROBE) :]
        if not rest.startswith(self.turn_end_text):
            raise ModelError(
                "the chat template ends an assistant turn differently when more messages follow; "
                "its turns cannot be rendered one delta at a time"
            )
        return self.encode(rest[len(self.turn_end_text) :])


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters of a `LocalEngine` since it started.

    Fields:
        waiting: calls queued for admission.
        running: calls being generated.
        sessions: sessions the engine knows (token ids kept).
        cached_sessions: idle sessions holding a KV cache.
        cached_tokens: tokens in those caches.
        max_cached_tokens: the bound on `cached_tokens`.
        generations: finished generate calls.
        prefill_forwards, decode_forwards: forward passes of each kind.
        prefilled_tokens: prompt tokens computed by prefill (new tokens, or a whole context
            re-prefilled after its cache was dropped).
        reused_tokens: prompt tokens whose keys and values came from a kept cache instead.
        shared_tokens: prompt tokens computed once for several sessions whose contexts were
            identical in one prefill (e.g. many episodes' same first prompt).
        sampled_tokens: tokens sampled.
        lru_evictions, ttl_evictions: caches dropped for memory and for idleness.
    """

    waiting: int
    running: int
    sessions: int
    cached_sessions: int
    cached_tokens: int
    max_cached_tokens: int
    generations: int
    prefill_forwards: int
    decode_forwards: int
    prefilled_tokens: int
    reused_tokens: int
    shared_tokens: int
    sampled_tokens: int
    lru_evictions: int
    ttl_evictions: int


@dataclass(eq=False)
class _Session:
    """One conversation: its exact ids, and the KV cache of all of them but the last."""

    key: str | None
    opened: float
    ids: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    """Forced end-of-turn ids owed after the last reply; they open the next call's prompt ids."""
    kv: tuple[torch.Tensor, ...] | None = None
    """Keys and values of `ids[:kv_len]`, one [slots, kv_heads, kv_len, head_dim] tensor per
    `_Store` part."""
    kv_len: int = 0
    kv_view: bool = False
    """`kv` is still a view of its batch's buffer (`_sweep` copies it out once the session idles)."""
    replies: int = 0
    last_used: float = 0.0
    busy: bool = False
    ended: bool = False


@dataclass(eq=False)
class _Job:
    """One generate call as the worker sees it."""

    session: _Session
    delta_ids: list[int]
    sampling: SamplingParams
    rng: random.Random
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Generation]
    submitted: float
    prompt_ids: list[int] = field(default_factory=list)
    allowed_ids: tuple[tuple[int, ...], ...] | None = None
    """The token ids of each allowed reply (`SamplingParams.allowed`), or None."""
    undo: tuple[int, list[int]] = (0, [])
    past: tuple[torch.Tensor, ...] | None = None
    past_len: int = 0
    max_new: int = 0
    sampled: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str | None = None
    admitted: float = 0.0
    prefill_s: float = 0.0
    settled: bool = False
    """Answered or abandoned: nothing more may touch its session."""


@dataclass(eq=False)
class _Batch:
    """Rows decoding together: a left-padded cache, its 2D attention mask, and one job per row.

    Every row's real tokens are contiguous and end at the last column: row `r` holds its context
    in columns `starts[r]:` (everything before is padding, masked out)."""

    cache: DynamicCache
    store: _Store
    mask: torch.Tensor
    jobs: list[_Job]
    starts: list[int]


class _Store:
    """Every layer's keys and values for one batch's rows, with room to grow.

    Keys and values of all layers that share a shape live in one tensor, a *part*, of shape
    [slots, rows, kv_heads, capacity, head_dim] (one slot per layer and kind): for common models
    there is one part, so moving a row's whole context (keeping it after its turn, placing it in
    the next batch) is one copy, not two per layer. Rows are right-aligned: a row's context fills
    the columns `start:filled`. `slots[layer]` says where a layer's keys and values are.
    """

    def __init__(self, parts: list[torch.Tensor], slots: list[tuple[int, int, int, int]]) -> None:
        self.parts = parts
        self.slots = slots
        """Per layer: (part, slot) of its keys, then (part, slot) of its values."""
        self.layers: list[Any] = []
        """The cache layers reading this store (rebound whenever `parts` change)."""

    @property
    def capacity(self) -> int:
        return int(self.parts[0].shape[3])

    def buffers(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A layer's [rows, kv_heads, capacity, head_dim] keys and values (views)."""
        key_part, key_slot, value_part, value_slot = self.slots[layer]
        return self.parts[key_part][key_slot], self.parts[value_part][value_slot]

    def row(self, row: int, start: int, end: int) -> tuple[torch.Tensor, ...]:
        """Row `row`'s columns `start:end` of every part (views, one per part)."""
        return tuple(part[:, row, :, start:end] for part in self.parts)

    def place(self, row: int, start: int, kept: tuple[torch.Tensor, ...]) -> None:
        """Copy a kept context (from `row`) into row `row` from column `start`."""
        for part, piece in zip(self.parts, kept, strict=True):
            part[:, row, :, start : start + piece.shape[2]] = piece

    def _rebind(self) -> None:
        for layer in self.layers:
            layer.bind()

    def select(self, index: torch.Tensor) -> None:
        """Keep the rows in `index`, in that order (a copy)."""
        self.parts = [part.index_select(1, index) for part in self.parts]
        self._rebind()

    def drop_columns(self, first: int) -> None:
        """Forget the first `first` columns (views: nothing is copied)."""
        self.parts = [part[:, :, :, first:] for part in self.parts]
        for layer in self.layers:
            layer.filled -= first
        self._rebind()

    def grow(self, capacity: int) -> None:
        """Room for `capacity` columns, keeping every column there is."""
        grown = []
        for part in self.parts:
            bigger = part.new_empty((*part.shape[:3], capacity, part.shape[4]))
            bigger[:, :, :, : part.shape[3]] = part
            grown.append(bigger)
        self.parts = grown
        self._rebind()


def _live_rows(batch: _Batch) -> int:
    """Rows of `batch` still generating (answered rows may ride along until it is compacted)."""
    return sum(not job.settled for job in batch.jobs)


@functools.cache
def _batch_layer_class() -> type:
    """`_BatchLayer`, built on first use (transformers is imported lazily)."""
    import torch
    from transformers.cache_utils import DynamicLayer

    class _BatchLayer(DynamicLayer):
        """One layer of a batch's cache, reading and writing its `_Store`.

        `DynamicLayer.update` concatenates, copying the whole past on every forward pass; this layer
        writes the new columns into the store's spare capacity and hands attention a view of the
        filled part. `keep` (a [rows, 1, new, 1] bool mask, set before a prefill) marks new
        columns whose kept keys and values must stay: a row whose cached past reaches into the
        query window feeds those tokens again only as padding, so each row's real columns stay
        contiguous.
        """

        def __init__(self, store: _Store, index: int, filled: int) -> None:
            super().__init__()
            self.store = store
            self.index = index
            self.filled = filled
            self.keep: torch.Tensor | None = None
            self.is_initialized = True
            self.device = store.parts[0].device
            store.layers.append(self)
            self.bind()

        def bind(self) -> None:
            """Re-read the store's buffers (after it changed them) and view the filled columns."""
            self.buffer_keys, self.buffer_values = self.store.buffers(self.index)
            self.keys = self.buffer_keys[:, :, : self.filled]
            self.values = self.buffer_values[:, :, : self.filled]

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            pass  # the store is allocated before the forward pass

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            start = self.filled
            end = start + key_states.shape[-2]
            if end > self.store.capacity:
                self.store.grow(max(end, 2 * self.store.capacity))
            keys = self.buffer_keys[:, :, start:end]
            values = self.buffer_values[:, :, start:end]
            if self.keep is not None:
                key_states = torch.where(self.keep, keys, key_states)
                value_states = torch.where(self.keep, values, value_states)
                self.keep = None
            keys.copy_(key_states)
            values.copy_(value_states)
            self.filled = end
            self.keys = self.buffer_keys[:, :, :end]
            self.values = self.buffer_values[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.filled

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            raise NotImplementedError("select rows through the batch's `_Store`")

    return _BatchLayer


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu'")
    return device


def _ids_of(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


class LocalEngine(WorkerThreadEngine):
    """A `Model` over a local Hugging Face causal LM folder, batching many sessions at once.

    It honours `SamplingParams.allowed` (constrained replies; see the module docstring).

    Args:
        path: the model folder (config.json, weights, tokenizer with a chat template).
        device: `auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1`, ...
        max_batch_size: most calls generating at once (all running batches together); more wait.
        batch_wait_s: how long a waiting request may wait for others to be prefilled with it.
        max_cached_tokens: bound on KV-cached tokens across idle sessions (LRU beyond it);
            None sizes it to about 2 GiB of keys and values.
        session_ttl_s: an idle session's cache is dropped after this many seconds.
        seed: seeds the sampling of requests that carry no seed of their own.
        dtype: `float32`, `bfloat16`, `float16`; None is float32 on CPU and the checkpoint's
            own dtype on CUDA.
        max_prefill_tokens: most (padded) new tokens in one prefill forward pass.
        threads: torch's intra-op CPU threads, set process-wide when given. Small models run
            fastest with 1, and on a CPU shared with other work more threads than free cores
            can make each forward pass a hundred times slower; None leaves torch's setting.
    """

    supports_allowed_replies = True

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        max_batch_size: int = 64,
        batch_wait_s: float = 0.002,
        max_cached_tokens: int | None = None,
        session_ttl_s: float = 300.0,
        seed: int = 0,
        dtype: str | None = None,
        max_prefill_tokens: int = 8192,
        threads: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if batch_wait_s < 0:
            raise ValueError(f"batch_wait_s must be >= 0, got {batch_wait_s}")
        if max_cached_tokens is not None and max_cached_tokens < 0:
            raise ValueError(f"max_cached_tokens must be >= 0, got {max_cached_tokens}")
        if session_ttl_s <= 0:
            raise ValueError(f"session_ttl_s must be positive, got {session_ttl_s}")
        if max_prefill_tokens < 1:
            raise ValueError(f"max_prefill_tokens must be at least 1, got {max_prefill_tokens}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"{folder} is not a Hugging Face model folder (no config.json); "
                "create one with `palaestra model init DIR`"
            )

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
        from transformers.cache_utils import DynamicLayer

        if threads is not None:
            torch.set_num_threads(threads)
        self.name = f"hf:{folder}"
        self.path = folder
        self.device = _resolve_device(device)
        if dtype is None:
            torch_dtype: Any = torch.float32 if self.device == "cpu" else "auto"
        else:
            torch_dtype = getattr(torch, dtype, None)
            if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
                raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, dtype=torch_dtype
            )
        self.model: Any = model.to(self.device).eval()
        """The `transformers` model (public so trainers and tests can share its weights)."""
        self.renderer = ChatRenderer(self.tokenizer)
        marker = getattr(self.model.config, "palaestra", None)
        self.prompt_template: str = (
            marker["prompt_template"] if isinstance(marker, dict) and "prompt_template" in marker else "mars"
        )
        """The agent prompt template the checkpoint says it is meant for (`compact` for the tiny model)."""

        probe = DynamicCache(config=self.model.config)
        unsupported = sorted(
            {type(layer).__name__ for layer in probe.layers if type(layer) is not DynamicLayer}
        )
        if unsupported:
            raise ValueError(
                f"{folder}: LocalEngine batches full-attention models only; "
                f"this one has {', '.join(unsupported)}"
            )
        parameters = inspect.signature(self.model.forward).parameters
        if "cache" in parameters:
            self._cache_argument = "cache"
        elif "past_key_values" in parameters:
            self._cache_argument = "past_key_values"
        else:
            raise ValueError(f"{folder}: the model's forward takes no KV cache; LocalEngine needs one")

        text_config = self.model.config.get_text_config(decoder=True)
        self.max_positions: int | None = getattr(text_config, "max_position_embeddings", None)
        self.vocab_size: int = int(self.model.get_output_embeddings().weight.shape[0])
        self.stop_token_ids: frozenset[int] = self._stop_ids()
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else next(iter(self.stop_token_ids), 0))
        end = self.renderer.turn_end_ids
        # The one token that may end a constrained reply: the template's own end of turn.
        self._reply_end_id = end[0] if end and end[0] in self.stop_token_ids else min(self.stop_token_ids)
        self._probe_kv_layout()

        heads = getattr(text_config, "num_key_value_heads", None) or text_config.num_attention_heads
        head_dim = (
            getattr(text_config, "head_dim", None)
            or text_config.hidden_size // text_config.num_attention_heads
        )
        element = torch.empty((), dtype=self.model.dtype).element_size()
        self.kv_bytes_per_token = 2 * text_config.num_hidden_layers * heads * head_dim * element
        if max_cached_tokens is None:
            max_cached_tokens = max(4096, _KV_BUDGET_BYTES // self.kv_bytes_per_token)
        self.max_cached_tokens = max_cached_tokens
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.session_ttl_s = session_ttl_s
        self.max_prefill_tokens = max_prefill_tokens
        self._seed_stream = random.Random(seed)
        self._allowed_cache: dict[str, tuple[int, ...]] = {}

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._sessions: dict[str, _Session] = {}
        self._cached: OrderedDict[str, _Session] = OrderedDict()
        """Idle sessions holding a KV cache, least recently used first."""
        self._cached_tokens = 0
        self._views: list[_Session] = []
        """Sessions whose kept cache may still be a view of a batch buffer."""
        self._retired: list[_Store] = []
        """Stores of finished batches, whose memory new stores reuse once no kept cache views it."""
        self._storage_users: Any = None
        self._idle_users = 0
        # torch's count of a storage's holders (a private helper; without it memory is not reused).
        users = getattr(torch._C, "_storage_Use_Count", None)
        if users is not None and self.device == "cpu":
            # A part only the store holds: the part and the handle `untyped_storage()` returns.
            probe_part = torch.empty(4)
            self._idle_users = users(probe_part.untyped_storage()._cdata)
            self._storage_users = users
        self._waiting: list[_Job] = []
        self._running_rows = 0
        self._last_answers = 0.0
        """When the worker last handed out answers (perf_counter)."""
        self._answered = 0
        self._returned = 0
        """Answers handed out, and requests received, since the last admission: once as many
        requests came back as answers went out, everyone is back and waiting longer gains nothing."""
        """Rows in running batches, as the worker last counted them."""
        self._outbox: list[tuple[_Job, Generation | ModelError]] = []
        """Answers the worker has made but not yet handed to the callers' event loops."""
        self._batches: list[_Batch] = []
        """Running batches, each decoded one token per step (see `_MAX_RUNNING_BATCHES`)."""
        self._closing = False
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "generations",
                "prefill_forwards",
                "decode_forwards",
                "prefilled_tokens",
                "reused_tokens",
                "shared_tokens",
                "sampled_tokens",
                "lru_evictions",
                "ttl_evictions",
            ),
            0,
        )
        self._last_sweep = time.monotonic()
        self._sweep_interval = min(_SWEEP_INTERVAL_S, session_ttl_s / 2)
        self._worker = threading.Thread(
            target=self._work, name=f"palaestra-engine:{folder.name}", daemon=True
        )
        self._worker.start()

    # ----- public API ---------------------------------------------------------------------
    async def end_session(self, session: str) -> None:
        """Forget a session (ids and cache); a reply still in flight is delivered, then dropped."""
        with self._lock:
            state = self._sessions.pop(session, None)
            if state is not None:
                state.ended = True
                self._uncache(state)

    def drop_caches(self) -> None:
        """Drop every idle session's KV cache (their ids stay): call it after changing the weights."""
        with self._lock:
            while self._cached:
                _, session = next(iter(self._cached.items()))
                self._uncache(session)

    @property
    def end_of_turn_ids(self) -> list[int]:
        """What the chat template writes after an assistant reply, as ids."""
        return list(self.renderer.turn_end_ids)

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(
                waiting=len(self._waiting),
                running=sum(_live_rows(batch) for batch in list(self._batches)),
                sessions=len(self._sessions),
                cached_sessions=len(self._cached),
                cached_tokens=self._cached_tokens,
                max_cached_tokens=self.max_cached_tokens,
                **self._counts,
            )

    def _probe_kv_layout(self) -> None:
        """Find each layer's key and value shapes (one token through the model) and lay them out
        in `_Store` parts: one part per distinct [kv_heads, head_dim]."""
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self.model(
                input_ids=torch.tensor([[self._pad_id]], device=self.device),
                use_cache=True,
                **{self._cache_argument: cache},
            )
        parts: dict[tuple[int, int], int] = {}
        counts: list[int] = []
        slots: list[tuple[int, int, int, int]] = []
        for layer in cache.layers:
            where = []
            for states in (layer.keys, layer.values):
                shape = (int(states.shape[1]), int(states.shape[3]))
                if shape not in parts:
                    parts[shape] = len(counts)
                    counts.append(0)
                part = parts[shape]
                where += [part, counts[part]]
                counts[part] += 1
            slots.append((where[0], where[1], where[2], where[3]))
        self._kv_slots = slots
        self._kv_parts = [(counts[part], heads, dim) for (heads, dim), part in parts.items()]
        self._kv_dtype = cache.layers[0].keys.dtype
        self._kv_itemsize = cache.layers[0].keys.element_size()

    # ----- request side (caller's thread) ------------------------------------------------
    def _stop_ids(self) -> frozenset[int]:
        stop = set(_ids_of(self.tokenizer.eos_token_id))
        generation_config = getattr(self.model, "generation_config", None)
        if generation_config is not None:
            stop.update(_ids_of(generation_config.eos_token_id))
        end = self.renderer.turn_end_ids
        if end and end[0] in set(self.tokenizer.all_special_ids) | set(self.tokenizer.added_tokens_decoder):
            stop.add(end[0])
        return frozenset(stop)

    def _make_job(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> _Job:
        sampling = request.sampling
        if sampling.temperature < 0:
            raise ModelError(f"temperature must be >= 0, got {sampling.temperature}")
        if not 0 < sampling.top_p <= 1:
            raise ModelError(f"top_p must be in (0, 1], got {sampling.top_p}")
        if sampling.max_new_tokens < 1:
            raise ModelError(f"max_new_tokens must be at least 1, got {sampling.max_new_tokens}")
        allowed_ids = None if sampling.allowed is None else self._allowed_ids(sampling)
        session = self._checkout(request.session)
        try:
            if request.prompt_ids is not None:
                delta = [int(i) for i in request.prompt_ids]
                bad = [i for i in delta if not 0 <= i < self.vocab_size]
                if bad:
                    raise ModelError(
                        f"prompt_ids hold ids outside the vocabulary (0..{self.vocab_size - 1}): {bad[:5]}"
                    )
            elif session.replies == 0:
                if not request.messages:
                    raise ModelError(
                        "the first request of a session needs messages or prompt_ids; it has neither"
                    )
                delta = self.renderer.first(request.messages)
            else:
                delta = self.renderer.after_reply(request.messages)
            if session.replies == 0 and not delta:
                raise ModelError("the first request of a session has nothing to read (empty prompt_ids)")
            if delta and max(delta) >= self.vocab_size:
                raise ModelError(
                    f"the tokenizer produced id {max(delta)}, beyond the model's {self.vocab_size} "
                    "embeddings; the model folder's tokenizer does not match its weights"
                )
            seed = sampling.seed
            if seed is None:
                with self._lock:
                    seed = self._seed_stream.getrandbits(63)
            job = _Job(
                session=session,
                delta_ids=delta,
                sampling=sampling,
                rng=random.Random(seed),
                loop=loop,
                future=loop.create_future(),
                submitted=time.perf_counter(),
                allowed_ids=allowed_ids,
            )
            with self._wake:
                if self._closing:
                    raise ModelError(f"{self.name} is closed")
                self._waiting.append(job)
                self._returned += 1
                # The worker times its own admission window; it needs waking only to open one, when
                # the batch is full, or when every answered session is back (each wake-up costs
                # the callers' thread a GIL hand-off).
                if (
                    len(self._waiting) == 1
                    or len(self._waiting) >= self.max_batch_size - self._running_rows
                    or self._returned == self._answered
                ):
                    self._wake.notify()
        except BaseException:
            self._release(session)
            raise
        return job

    def _allowed_ids(self, sampling: SamplingParams) -> tuple[tuple[int, ...], ...]:
        """The token ids of each allowed reply; ModelError when the set cannot be honoured."""
        assert sampling.allowed is not None
        if not sampling.allowed:
            raise ModelError("allowed replies: the set is empty, so no reply is possible")
        encoded = []
        for text in sampling.allowed:
            ids = self._allowed_cache.get(text)
            if ids is None:
                ids = tuple(self.renderer.encode(text))
                if not ids:
                    raise ModelError(f"allowed replies: {text!r} encodes to no tokens")
                if any(i in self.stop_token_ids for i in ids):
                    raise ModelError(f"allowed replies: {text!r} holds an end-of-turn token")
                if len(self._allowed_cache) < 65_536:
                    self._allowed_cache[text] = ids
            encoded.append(ids)
        longest = max(len(ids) for ids in encoded)
        if longest + 1 > sampling.max_new_tokens:
            raise ModelError(
                f"allowed replies: max_new_tokens {sampling.max_new_tokens} cannot fit the longest "
                f"allowed reply ({longest} tokens) and its end of turn"
            )
        return tuple(encoded)

    def _allowed_mask(self, jobs: list[_Job], vocab: int) -> list[tuple[int, list[int]]]:
        """(row, token ids it may sample next) for each row with allowed replies."""
        rows = []
        for row, job in enumerate(jobs):
            if job.allowed_ids is None or job.settled:
                continue
            done = job.sampled
            depth = len(done)
            next_ids: set[int] = set()
            for ids in job.allowed_ids:
                if len(ids) >= depth and list(ids[:depth]) == done:
                    next_ids.add(ids[depth] if len(ids) > depth else self._reply_end_id)
            rows.append((row, sorted(i for i in next_ids if i < vocab)))
        return rows

    def _checkout(self, key: str | None) -> _Session:
        now = time.monotonic()
        with self._lock:
            if self._closing:
                raise ModelError(f"{self.name} is closed")
            if key is None:
                return _Session(key=None, opened=now, busy=True)
            state = self._sessions.get(key)
            if state is None:
                state = self._sessions[key] = _Session(key=key, opened=now, last_used=now)
            elif state.busy:
                raise ModelError(
                    f"session {key!r} already has a generation in flight; a session is one conversation, "
                    "so wait for its reply before sending more"
                )
            state.busy = True
            return state

    def _release(self, session: _Session) -> None:
        with self._lock:
            session.busy = False
            if session.key is not None and not session.ids and self._sessions.get(session.key) is session:
                del self._sessions[session.key]

    # ----- worker thread ------------------------------------------------------------------
    def _work(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                jobs = self._take_jobs()
                if jobs is None:
                    break
                try:
                    if jobs:
                        self._admit(jobs)
                    for batch in list(self._batches):
                        self._decode_step(batch)
                    self._flush()
                    self._sweep()
                except Exception as exc:  # noqa: BLE001 - a bug must fail calls, never hang them
                    error = ModelError(f"{self.name} failed: {type(exc).__name__}: {exc}")
                    running = [job for batch in self._batches for job in batch.jobs]
                    self._batches = []
                    for job in {id(job): job for job in [*jobs, *running]}.values():
                        self._fail(job, error)
                    self._flush()
        self._fail_all(ModelError(f"{self.name} is closed"))
        self._flush()

    def _take_jobs(self) -> list[_Job] | None:
        """Jobs to admit now ([] to go on decoding), or None when closing."""
        with self._wake:
            while True:
                if self._closing:
                    return None
                running = sum(_live_rows(batch) for batch in self._batches)
                self._running_rows = running
                capacity = self.max_batch_size - running
                now = time.perf_counter()
                if self._waiting and capacity > 0:
                    # Admit once arrivals pause for `batch_wait_s` (a burst of requests, e.g. every
                    # episode answering at once, is prefilled together), or when the oldest has
                    # waited `_MAX_WAITS` windows, or when the batch would be full. While fewer
                    # wait than are decoding, the pause is not enough: those few would cost a
                    # forward pass per step of their own, and the running rows, done in a few
                    # steps, will soon bring their next requests to share a prefill with them.
                    oldest = min(job.submitted for job in self._waiting)
                    latest = oldest + _MAX_WAITS * self.batch_wait_s
                    if len(self._waiting) >= running:
                        # Answers just handed out bring requests back within a few moments:
                        # those count as arrivals still coming, until as many came back.
                        newest = max(self._last_answers, *(job.submitted for job in self._waiting))
                        admit_at = min(newest + self.batch_wait_s, latest)
                        if not running and 0 < self._answered <= self._returned:
                            admit_at = now
                    else:
                        admit_at = latest
                    if len(self._waiting) >= capacity or now >= admit_at:
                        # Program-level FCFS: the session that started first goes first.
                        self._waiting.sort(key=lambda job: (job.session.opened, job.submitted))
                        taken, self._waiting = self._waiting[:capacity], self._waiting[capacity:]
                        self._answered = self._returned = 0
                        return taken
                    if running:
                        return []
                    self._wake.wait(admit_at - now)
                    continue
                if running:
                    return []
                self._wake.wait(self._sweep_interval)
                if not self._waiting:
                    return []

    def _admit(self, jobs: list[_Job]) -> None:
        ready: list[_Job] = []
        for job in jobs:
            if job.future.cancelled():
                self._abandon(job)
                continue
            session = job.session
            job.admitted = time.perf_counter()
            with self._lock:
                job.undo = (len(session.ids), session.pending)
                job.prompt_ids = session.pending + job.delta_ids
                session.pending = []
                session.ids.extend(job.prompt_ids)
                if session.kv is not None:
                    job.past, job.past_len = session.kv, session.kv_len
                    self._uncache(session)
            total = len(session.ids)
            if self.max_positions is not None and total > self.max_positions:
                self._fail(
                    job,
                    ModelError(
                        f"session {session.key!r} holds {total} tokens, more than the model reads "
                        f"({self.max_positions}); end it and start a shorter conversation"
                    ),
                )
                continue
            job.max_new = job.sampling.max_new_tokens
            if self.max_positions is not None:
                job.max_new = min(job.max_new, self.max_positions - total + 1)
            ready.append(job)
        for group in self._prefill_groups(ready):
            self._prefill(group)

    def _prefill_groups(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Split jobs into prefill batches whose padding stays a small share of the real work.

        Sorted by context length, so sessions at similar depths share a batch: padded columns cost
        attention in this pass and in every decode step after it, padded new tokens cost a whole
        forward pass each.
        """
        groups: list[list[_Job]] = []
        current: list[_Job] = []
        computed = real_new = real_width = longest_new = longest_width = 0
        previous: tuple[int, ...] | None = None
        # Identical contexts (nothing kept) sort next to each other and cost nothing extra: they
        # are computed once (see `_prefill`).
        keyed = [(job, tuple(job.session.ids) if not job.past_len else None) for job in jobs]
        keyed.sort(key=lambda pair: (len(pair[0].session.ids), pair[0].past_len, pair[1] or ()))
        for job, key in keyed:
            if current and key is not None and key == previous:
                current.append(job)
                continue
            previous = key
            width = len(job.session.ids)
            new = width - job.past_len
            rows = computed + 1
            padded_new = rows * max(longest_new, new)
            padded_width = rows * max(longest_width, width)
            if current and (
                padded_new > self.max_prefill_tokens
                or padded_new > 1.5 * (real_new + new) + 16 * rows
                or padded_width > 1.25 * (real_width + width) + 32 * rows
            ):
                groups.append(current)
                current, computed, real_new, real_width, longest_new, longest_width = [], 0, 0, 0, 0, 0
            current.append(job)
            computed += 1
            real_new += new
            real_width += width
            longest_new = max(longest_new, new)
            longest_width = max(longest_width, width)
        if current:
            groups.append(current)
        return groups

    def _prefill(self, jobs: list[_Job]) -> None:
        """One forward pass over the jobs' new tokens, each row reading its kept cache.

        Rows are right-aligned: row r's context fills the last len(ids) columns. The query window
        is the last `new` columns (the most any row has to compute); a row with less to compute
        feeds the tail of its kept context there too (or padding when it has none), and its kept
        keys and values win over the recomputed ones (`_BatchLayer.keep`).

        Jobs with nothing kept whose contexts are identical (the same first prompt in many
        episodes, a GRPO group) are computed once: their twins get copies of its keys, values and
        logits, then sample on their own.
        """
        import torch

        started = time.perf_counter()
        unique: list[_Job] = []
        source: list[int] = []
        """Per job, the row of `unique` that computes it."""
        seen: dict[tuple[int, ...], int] = {}
        for job in jobs:
            if job.past_len:
                source.append(len(unique))
                unique.append(job)
                continue
            key = tuple(job.session.ids)
            row = seen.get(key)
            if row is None:
                row = seen[key] = len(unique)
                unique.append(job)
            source.append(row)
        lengths = [len(job.session.ids) for job in unique]
        pasts = [job.past_len for job in unique]
        feeds = [length - past for length, past in zip(lengths, pasts, strict=True)]
        new = max(feeds)
        width = max(lengths)
        pad = self._pad_id
        input_rows: list[list[int]] = []
        for job, length in zip(unique, lengths, strict=True):
            tail = job.session.ids[max(0, length - new) :]
            input_rows.append([pad] * (new - len(tail)) + tail if len(tail) < new else tail)
        input_ids = torch.tensor(input_rows, dtype=torch.long)
        length_column = torch.tensor(lengths, dtype=torch.long).unsqueeze(1)
        positions = (torch.arange(new, dtype=torch.long).unsqueeze(0) + (length_column - new)).clamp_(min=0)
        if self.max_positions is not None:
            positions.clamp_(max=self.max_positions - 1)
        mask = (torch.arange(width, dtype=torch.long).unsqueeze(0) >= (width - length_column)).long()
        starts = [width - lengths[row] for row in source]
        try:
            cache, store = self._prefill_cache(unique, width, new, feeds)
            logits = self._forward(input_ids, mask, positions, cache, 1)[:, -1]
            if len(unique) < len(jobs):
                index = torch.tensor(source, dtype=torch.long)
                store.select(index.to(self.device))
                mask = mask[index]
                logits = logits[index.to(logits.device)]
            tokens, logprobs = self._sample(logits, jobs)
        except Exception as exc:  # noqa: BLE001 - a failed forward fails its calls, not the engine
            for job in jobs:
                job.past = None
                self._fail(job, ModelError(f"{self.name} prefill failed: {type(exc).__name__}: {exc}"))
            return
        with self._lock:
            self._counts["shared_tokens"] += sum(len(job.session.ids) for job in jobs) - sum(lengths)
        batch = _Batch(cache=cache, store=store, mask=mask.to(self.device), jobs=jobs, starts=starts)
        self._start_batch(batch, tokens, logprobs, started, sum(feeds), sum(pasts))

    def _start_batch(
        self, batch: _Batch, tokens: list[int], logprobs: list[float], started: float, fed: int, reused: int
    ) -> None:
        """Count a prefill, record its first tokens, and let the batch decode."""
        with self._lock:
            self._counts["prefill_forwards"] += 1
            self._counts["prefilled_tokens"] += fed
            self._counts["reused_tokens"] += reused
        elapsed = time.perf_counter() - started
        for job in batch.jobs:
            job.prefill_s = elapsed
        self._advance(batch, tokens, logprobs)
        if not batch.jobs:
            self._recycle(batch)
            return
        self._batches.append(batch)
        if len(self._batches) > _MAX_RUNNING_BATCHES:
            # Too many forward passes per step: fold the two smallest batches into one.
            self._batches.sort(key=lambda b: len(b.jobs))
            first, second, *rest = self._batches
            self._batches = [self._merge(first, second), *rest]
            self._recycle(first)
            self._recycle(second)

    def _prefill_cache(
        self, jobs: list[_Job], width: int, new: int, feeds: list[int]
    ) -> tuple[DynamicCache, _Store]:
        """The batch cache for a prefill: each row's kept keys and values placed right-aligned,
        room for its decode steps, and the `keep` mask of kept columns inside the query window."""
        import torch

        starts = [width - len(job.session.ids) for job in jobs]
        with_past = [bool(job.past is not None and job.past_len) for job in jobs]
        # No spare room beyond the decode steps: slack between rows' columns makes attention
        # slower (decode steps up to twice as slow with a few hundred spare columns).
        capacity = width + max(job.max_new for job in jobs) - 1
        # Padding must read as zeros (masked, but 0 * garbage can be NaN); the query window
        # and the columns after it are written by the forward pass itself.
        store = self._new_store(len(jobs), capacity, zero_to=max(starts) if any(with_past) else 0)
        for row, job in enumerate(jobs):
            if with_past[row]:
                assert job.past is not None
                store.place(row, starts[row], job.past)
            job.past = None
        cache = self._cache_for(store, width - new)
        if any(past and feed < new for past, feed in zip(with_past, feeds, strict=True)):
            device = store.parts[0].device
            room = torch.tensor(
                [new - feed if past else 0 for past, feed in zip(with_past, feeds, strict=True)],
                dtype=torch.long,
                device=device,
            ).unsqueeze(1)
            keep = (torch.arange(new, dtype=torch.long, device=device).unsqueeze(0) < room).view(
                len(jobs), 1, new, 1
            )
            for layer in cache.layers:
                layer.keep = keep
        return cache, store

    def _new_store(self, rows: int, capacity: int, zero_to: int) -> _Store:
        """An empty store for `rows` rows and `capacity` columns, the first `zero_to` zeroed."""
        parts = []
        for slots, heads, dim in self._kv_parts:
            part = self._new_part((slots, rows, heads, capacity, dim))
            if zero_to:
                part[:, :, :, :zero_to].zero_()
            parts.append(part)
        return _Store(parts, self._kv_slots)

    def _new_part(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An uninitialised store part, in a retired store's memory when one is free."""
        import torch

        storage = self._spare_storage(math.prod(shape) * self._kv_itemsize)
        if storage is None:
            return torch.empty(shape, dtype=self._kv_dtype, device=self.device)
        return torch.empty(0, dtype=self._kv_dtype, device=self.device).set_(storage, 0, shape)

    def _recycle(self, batch: _Batch) -> None:
        """A finished batch: let go of its cache layers, and keep its store's memory for a later
        batch once no kept cache views it any more (fresh memory costs a page fault per 4 KiB,
        about as much as writing it)."""
        for layer in batch.cache.layers:
            layer.keys = layer.values = layer.buffer_keys = layer.buffer_values = None
        batch.store.layers = []
        if self._storage_users is not None:
            self._retired.append(batch.store)
            del self._retired[:-_MAX_RETIRED_STORES]

    def _spare_storage(self, nbytes: int) -> Any:
        """Memory of a retired store that nothing views any more and that holds `nbytes`
        (the smallest such), or None."""
        if self._storage_users is None or not self._retired:
            return None
        users = self._storage_users
        best: tuple[int, int, int] | None = None
        for index, store in enumerate(self._retired):
            for number, part in enumerate(store.parts):
                storage = part.untyped_storage()
                size = storage.nbytes()
                # Only the part itself (and the `storage` handle just taken) may hold it.
                if (
                    size >= nbytes
                    and users(storage._cdata) <= self._idle_users
                    and (best is None or size < best[0])
                ):
                    best = (size, index, number)
        if best is None:
            return None
        _, index, number = best
        store = self._retired[index]
        part = store.parts.pop(number)
        if not store.parts:
            del self._retired[index]
        return part.untyped_storage()

    def _cache_for(self, store: _Store, filled: int) -> DynamicCache:
        layer_class = _batch_layer_class()
        return self._new_cache([layer_class(store, layer, filled) for layer in range(len(self._kv_slots))])

    def _new_cache(self, layers: list[Any]) -> DynamicCache:
        """A `DynamicCache` for this model whose layers are `_BatchLayer`s."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        if len(cache.layers) != len(layers):
            raise ModelError(
                f"{self.name}: the model's cache has {len(cache.layers)} layers, not {len(layers)}"
            )
        cache.layers = layers
        return cache

    def _forward(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
        logits_to_keep: int | torch.Tensor,
    ) -> torch.Tensor:
        outputs = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=logits_to_keep,
            **{self._cache_argument: cache},
        )
        return outputs.logits  # type: ignore[no-any-return]

    def _decode_step(self, batch: _Batch) -> None:
        import torch

        jobs = batch.jobs
        for job in jobs:
            if job.finish is None and job.future.cancelled():
                job.finish = "cancelled"
        if any(job.finish and not job.settled for job in jobs):
            self._retire(batch)
            if not batch.jobs:
                self._batches.remove(batch)
                self._recycle(batch)
                return
            jobs = batch.jobs
        # Rows already answered ride along on padding until the batch is compacted.
        pad = self._pad_id
        input_ids = torch.tensor(
            [[pad if job.settled else job.sampled[-1]] for job in jobs], dtype=torch.long
        )
        positions = torch.tensor(
            [[0 if job.settled else len(job.session.ids) + len(job.sampled) - 1] for job in jobs],
            dtype=torch.long,
        )
        mask = torch.cat([batch.mask, batch.mask.new_ones((len(jobs), 1))], 1)
        try:
            logits = self._forward(input_ids, mask, positions, batch.cache, 1)
            tokens, logprobs = self._sample(logits[:, -1], jobs)
        except Exception as exc:  # noqa: BLE001 - a failed forward fails its calls, not the engine
            self._batches.remove(batch)
            for job in jobs:
                self._fail(job, ModelError(f"{self.name} decode failed: {type(exc).__name__}: {exc}"))
            return
        batch.mask = mask
        with self._lock:
            self._counts["decode_forwards"] += 1
        self._advance(batch, tokens, logprobs)
        if not batch.jobs:
            self._batches.remove(batch)
            self._recycle(batch)

    def _advance(self, batch: _Batch, tokens: list[int], logprobs: list[float]) -> None:
        """Record one sampled token per row, then retire the rows that finished."""
        sampled = 0
        finished = False
        for job, token, logprob in zip(batch.jobs, tokens, logprobs, strict=True):
            if job.settled:
                continue
            sampled += 1
            job.sampled.append(token)
            job.logprobs.append(logprob)
            if token in self.stop_token_ids or self._hit_stop_string(job):
                job.finish = "stop"
                finished = True
            elif len(job.sampled) >= job.max_new:
                job.finish = "length"
                finished = True
        with self._lock:
            self._counts["sampled_tokens"] += sampled
        if finished:
            self._retire(batch)

    def _hit_stop_string(self, job: _Job) -> bool:
        if not job.sampling.stop:
            return False
        text = self.tokenizer.decode(job.sampled, skip_special_tokens=True)
        return any(stop in text for stop in job.sampling.stop)

    def _retire(self, batch: _Batch) -> None:
        """Answer the finished rows and keep their caches; compact the batch once many are done."""
        import torch

        keep: list[int] = []
        filled = batch.cache.layers[0].filled
        for row, job in enumerate(batch.jobs):
            if job.settled:
                continue
            if job.finish is None:
                keep.append(row)
                continue
            if job.finish == "cancelled":
                self._abandon(job)
                continue
            start = batch.starts[row]
            # Views, not copies: the next turn reads them into its own batch, and an ended
            # session never needs them; `_sweep` copies out those of sessions that idle.
            self._complete(job, batch.store.row(row, start, filled), filled - start)
        if not keep:
            batch.jobs = []
            return
        if 2 * len(keep) > len(batch.jobs):
            # Mostly still running: answered rows ride along (a padding token per step costs
            # less than copying every layer's keys and values to drop them).
            return
        batch.jobs = [batch.jobs[row] for row in keep]
        index = torch.tensor(keep, dtype=torch.long, device=batch.mask.device)
        batch.store.select(index)
        batch.mask = batch.mask[index]
        batch.starts = [batch.starts[row] for row in keep]
        first = min(batch.starts)
        if first >= _TRIM_MIN_COLUMNS and 4 * first >= batch.mask.shape[1]:
            # Columns only departed rows needed: drop them so attention stops reading them.
            batch.store.drop_columns(first)
            batch.mask = batch.mask[:, first:]
            batch.starts = [start - first for start in batch.starts]

    def _merge(self, running: _Batch, joining: _Batch) -> _Batch:
        """One batch from two, left-padding the narrower one's cache and mask."""
        import torch
        from torch.nn.functional import pad

        widths = [batch.cache.layers[0].filled for batch in (running, joining)]
        width = max(widths)
        jobs = running.jobs + joining.jobs
        capacity = width + max(job.max_new - len(job.sampled) for job in jobs)
        store = self._new_store(len(jobs), capacity, zero_to=width - min(widths))
        offset = 0
        for batch, filled in zip((running, joining), widths, strict=True):
            rows = slice(offset, offset + len(batch.jobs))
            for target, source in zip(store.parts, batch.store.parts, strict=True):
                target[:, rows, :, width - filled : width] = source[:, :, :, :filled]
            offset += len(batch.jobs)
        masks = [pad(batch.mask, (width - batch.mask.shape[1], 0)) for batch in (running, joining)]
        starts = [
            start + width - filled
            for batch, filled in zip((running, joining), widths, strict=True)
            for start in batch.starts
        ]
        return _Batch(
            cache=self._cache_for(store, width), store=store, mask=torch.cat(masks), jobs=jobs, starts=starts
        )

    def _sample(self, logits: torch.Tensor, jobs: list[_Job]) -> tuple[list[int], list[float]]:
        """One token per row (see the module docstring), and its raw log-prob."""
        import torch

        logits = logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        constrained = self._allowed_mask(jobs, logits.shape[-1])
        if constrained:
            keep = torch.zeros_like(logits, dtype=torch.bool)
            for row, ids in constrained:
                keep[row, ids] = True
            rows = torch.tensor([row for row, _ in constrained], device=logits.device)
            logits = logits.clone()
            logits[rows] = logits[rows].masked_fill(~keep[rows], float("-inf"))
        tokens = logits.argmax(dim=-1)
        sampled_rows = [row for row, job in enumerate(jobs) if job.sampling.temperature > 0]
        if sampled_rows:
            index = torch.tensor(sampled_rows, device=logits.device)
            temperatures = torch.tensor(
                [jobs[row].sampling.temperature for row in sampled_rows], device=logits.device
            ).unsqueeze(1)
            probs = torch.softmax(logits[index] / temperatures, dim=-1).double()
            top_ps = [jobs[row].sampling.top_p for row in sampled_rows]
            order: torch.Tensor | None = None
            if min(top_ps) < 1:
                probs, order = probs.sort(dim=-1, descending=True)
                mass_before = probs.cumsum(dim=-1) - probs
                limit = torch.tensor(top_ps, dtype=probs.dtype, device=probs.device).unsqueeze(1)
                probs = probs.masked_fill(mass_before >= limit, 0.0)
            cdf = probs.cumsum(dim=-1)
            total = cdf[:, -1:]
            draws = torch.tensor(
                [jobs[row].rng.random() for row in sampled_rows], dtype=cdf.dtype, device=cdf.device
            ).unsqueeze(1)
            pick = torch.searchsorted(cdf, draws * total, right=True)
            # Rounding may push a draw to the very end: fall back to the last token with mass.
            pick = torch.minimum(pick, (cdf < total).sum(dim=-1, keepdim=True))
            chosen = order.gather(1, pick) if order is not None else pick
            tokens[index] = chosen.squeeze(1)
        chosen_logprobs = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
        return tokens.tolist(), chosen_logprobs.tolist()

    # ----- finishing calls ----------------------------------------------------------------
    def _forced_ids(self, job: _Job) -> list[int]:
        """End-of-turn ids the template owes after this reply (see the module docstring)."""
        end = self.renderer.turn_end_ids
        if job.finish == "stop" and job.sampled and job.sampled[-1] in self.stop_token_ids:
            last = job.sampled[-1]
            return end[end.index(last) + 1 :] if last in end else list(end)
        return list(end)

    def _complete(self, job: _Job, kv: tuple[torch.Tensor, ...], kv_len: int) -> None:
        """Record the reply in its session and queue it for delivery (the session stays busy
        until the caller has it, so a call cancelled meanwhile can still be undone)."""
        if job.future.cancelled():
            self._abandon(job)
            return
        job.settled = True
        session = job.session
        finished = time.perf_counter()
        # trusted: every field is built right here; validation would cost more than sampling.
        generation = trusted(
            Generation,
            {
                "text": self.tokenizer.decode(job.sampled, skip_special_tokens=True),
                "prompt_ids": job.prompt_ids,
                "token_ids": list(job.sampled),
                "logprobs": list(job.logprobs),
                "loss_mask": [1] * len(job.sampled),
                "session_turn": session.replies,
                "finish_reason": job.finish or "stop",
                "model": self.name,
                "timings": {
                    "queue": job.admitted - job.submitted,
                    "prefill": job.prefill_s,
                    "decode": max(0.0, finished - job.admitted - job.prefill_s),
                    "total": finished - job.submitted,
                },
            },
        )
        with self._lock:
            session.ids.extend(job.sampled)
            session.pending = self._forced_ids(job)
            session.replies += 1
            self._counts["generations"] += 1
            session.last_used = time.monotonic()
            # The cache covers every id but the last sampled one, which the next turn feeds.
            if session.key is not None and not session.ended and kv_len == len(session.ids) - 1:
                session.kv, session.kv_len, session.kv_view = kv, kv_len, True
                self._views.append(session)
                self._cached[session.key] = session
                self._cached_tokens += kv_len
                self._enforce_bound()
        self._outbox.append((job, generation))

    def _flush(self) -> None:
        """Hand queued answers to their event loops, one wake-up per loop."""
        if not self._outbox:
            return
        self._last_answers = time.perf_counter()
        outbox, self._outbox = self._outbox, []
        answered = sum(isinstance(outcome, Generation) for _, outcome in outbox)
        if answered:
            with self._lock:
                self._answered += answered
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Generation | ModelError]]] = {}
        for item in outbox:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._deliver, items)
            except RuntimeError:  # the caller's loop has closed: nobody waits for these
                for job, outcome in items:
                    if isinstance(outcome, Generation):
                        self._undo_reply(job)

    def _deliver(self, items: list[tuple[_Job, Generation | ModelError]]) -> None:
        """On the caller's loop: resolve each call, or undo a reply whose caller gave up."""
        for job, outcome in items:
            if isinstance(outcome, ModelError):
                if not job.future.done():
                    job.future.set_exception(outcome)
            elif job.future.done():
                self._undo_reply(job)
            else:
                with self._lock:
                    job.session.busy = False
                job.future.set_result(outcome)

    def _undo_reply(self, job: _Job) -> None:
        """Take a reply back out of its session, as if the call had never been made."""
        session = job.session
        length, pending = job.undo
        with self._lock:
            del session.ids[length:]
            session.pending = pending
            session.replies -= 1
            self._uncache(session)
            session.busy = False
        self._release(session)

    def _abandon(self, job: _Job) -> None:
        """The call ends without a reply: undo what it added to its session."""
        if job.settled:
            return
        job.settled = True
        session = job.session
        length, pending = job.undo
        with self._lock:
            if job.admitted:
                del session.ids[length:]
                session.pending = pending
            session.busy = False
        self._release(session)

    def _fail(self, job: _Job, error: ModelError) -> None:
        if job.settled:
            return
        self._abandon(job)
        self._outbox.append((job, error))

    def _fail_all(self, error: ModelError) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        running = [job for batch in self._batches for job in batch.jobs]
        self._batches = []
        for job in [*waiting, *running]:
            self._fail(job, error)

    # ----- cache bookkeeping (callers hold self._lock) ------------------------------------
    def _uncache(self, session: _Session) -> None:
        if session.kv is not None:
            self._cached_tokens -= session.kv_len
            session.kv, session.kv_len, session.kv_view = None, 0, False
        if session.key is not None and self._cached.get(session.key) is session:
            del self._cached[session.key]

    def _enforce_bound(self) -> None:
        while self._cached_tokens > self.max_cached_tokens and self._cached:
            _, victim = next(iter(self._cached.items()))
            self._uncache(victim)
            self._counts["lru_evictions"] += 1

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self._sweep_interval:
            return
        self._last_sweep = now
        with self._lock:
            while self._cached:
                _, oldest = next(iter(self._cached.items()))
                if now - oldest.last_used < self.session_ttl_s:
                    break
                self._uncache(oldest)
                self._counts["ttl_evictions"] += 1
            # Kept caches that are views keep their whole batch's buffer alive: copy out those of
            # sessions that idle, so the memory bound counts what is really held.
            views, self._views = self._views, []
            for session in views:
                if session.kv is None or not session.kv_view:
                    continue
                if now - session.last_used < self._sweep_interval:
                    self._views.append(session)
                    continue
                session.kv = tuple(piece.clone() for piece in session.kv)
                session.kv_view = False
