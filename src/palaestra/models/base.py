"""The `Model` protocol: `await model.generate(request) -> Generation`.

A request names a `session` (one conversation: an episode and a player) and carries only the
messages that are new to that session since its last request. The engine keeps the session's
context, so local engines can keep token ids and KV cache between turns: a session's context is
always its previous prompt ids + the sampled ids + the template-rendered delta of the new
messages. Model tokens are never decoded and encoded again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from palaestra.core.messages import Message
from palaestra.core.records import Generation


class ModelError(RuntimeError):
    """A model call failed (dead server, bad request, engine error); one-line message."""


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample.

    Fields:
        temperature: 0 means greedy.
        top_p: nucleus sampling mass (1.0 = off).
        max_new_tokens: cap on sampled tokens; the generation's finish reason is `length` at it.
        stop: strings that end the generation (included in the text and ids).
        seed: makes sampling reproducible for engines that support it.
        allowed: when set, the only replies the model may give: every sampled token must extend
            one of these texts (as the tokenizer encodes it alone), and the end of turn may follow
            only a complete one (constrained decoding). Honoured by engines whose
            `supports_allowed_replies` is true (the local engine); log-probs stay the model's raw
            ones, so a trainer sees how unlikely a constrained reply was.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One model call.

    Fields:
        session: the conversation key (e.g. `episode_id/player`); None for a one-off call.
        messages: the messages new to this session since its last request (all of them for the
            first request of a session, system prompt included).
        sampling: sampling parameters.
        prompt_ids: token ids to append instead of rendering `messages` (token-in callers).
    """

    session: str | None
    messages: Sequence[Message] = ()
    sampling: SamplingParams = field(default_factory=SamplingParams)
    prompt_ids: Sequence[int] | None = None


@runtime_checkable
class Model(Protocol):
    """A text generator that reports the exact tokens it sampled."""

    name: str

    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def end_session(self, session: str) -> None:
        """Forget a session's context (its episode finished)."""
        ...

    async def close(self) -> None: ...
