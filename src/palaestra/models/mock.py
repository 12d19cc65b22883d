"""`MockModel`: a scripted `Model` for tests and benchmarks, with fake but consistent token ids.

It behaves like a local engine that keeps sessions: every session's context is the previous
context + the sampled ids + the rendered delta of the new messages, and `context(session)` shows
it, so tests can check token-in/token-out bookkeeping without torch. Its "tokenizer" is UTF-8
bytes (ids 0-255) plus a few special ids above them (one per role header and one end-of-turn id),
and its template is the tiny model's: `<role>TEXT<end>` per message and an `<assistant>`
generation prompt. It is built to be cheap, so runner benchmarks measure the runner.

Replies come from a script (the k-th call of a session gets `replies[k % len(replies)]`; an
exception in the script is raised instead), from a function of the request, or by default a
seeded random pick among the legal actions it finds in the latest message.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from palaestra.core.messages import Message
from palaestra.core.records import Generation, trusted
from palaestra.models.base import GenerationRequest, ModelError

PAD_ID = 256
END_ID = 257
ROLE_IDS: dict[str, int] = {"system": 258, "user": 259, "assistant": 260, "tool": 261}
VOCAB_SIZE = 262
"""Byte b of the UTF-8 text is id b; ids from 256 up are special."""

Reply = str | BaseException
ReplyFunction = Callable[[GenerationRequest], str | Awaitable[str]]

_LEGAL_MARKERS = ("LEGAL ACTIONS:", "Legal:")


def encode_text(text: str) -> list[int]:
    """The mock tokenizer: one id per UTF-8 byte."""
    return list(text.encode())


def decode_ids(ids: Sequence[int]) -> str:
    """Inverse of `encode_text`; special ids are dropped."""
    return bytes(i for i in ids if i < 256).decode(errors="replace")


def render_message(message: Message) -> list[int]:
    """A message's ids in the mock template: `<role>` + text + `<end>`."""
    body = message.content or ""
    if message.tool_calls:
        body += "".join(f"{call.name}{call.arguments}" for call in message.tool_calls)
    ids = [ROLE_IDS[message.role]]
    ids += body.encode()  # list += bytes appends each byte as an int, in C
    ids.append(END_ID)
    return ids


_LEGAL_CACHE_SIZE = 4096
_legal_by_content: dict[str, tuple[str, ...] | None] = {}
"""Parsed legal actions by message text (None: the text lists none): games repeat their turn
texts across episodes, and the mock parses one per call."""


def _legal_actions_of(content: str) -> tuple[str, ...] | None:
    found = _legal_by_content.get(content, False)
    if found is not False:
        return found  # type: ignore[return-value]
    # rfind rather than a regex over the whole text; the later of the two markers wins.
    at, marker = -1, ""
    for candidate in _LEGAL_MARKERS:
        where = content.rfind(candidate)
        if where > at:
            at, marker = where, candidate
    actions: tuple[str, ...] | None = None
    if at >= 0:
        line = content[at + len(marker) :].split("\n", 1)[0]
        actions = tuple(action.strip() for action in line.split(",") if action.strip())
    if len(_legal_by_content) >= _LEGAL_CACHE_SIZE:
        _legal_by_content.clear()
    _legal_by_content[content] = actions
    return actions


def legal_actions_in(messages: Sequence[Message]) -> list[str]:
    """The legal actions listed in the latest `LEGAL ACTIONS: a, b` (or `Legal: a,b`) line, if any."""
    for message in reversed(messages):
        actions = _legal_actions_of(message.content or "")
        if actions is not None:
            return list(actions)
    return []


class MockModel:
    """A `Model` that answers from a script and reports consistent token ids.

    Args:
        replies: a list of replies served per session in order (cycling), where an exception
            instance is raised instead of answered; or a function `request -> str` (sync or
            async); or None for the default: `<answer>A</answer>` with A a random legal action
            found in the request's messages (seeded by the request's seed and session), or
            "ok" when none is listed.
        name: the model name reported in each `Generation`.
        logprob: the log-prob reported for every sampled id.
        latency_s: seconds to wait in each call (to exercise concurrency); 0 does not yield.
        max_sessions: live session contexts kept; past it the least recently used is forgotten
            (as an engine drops caches), so long runs that never end sessions stay bounded.
        keep_requests: how many recent requests `requests` keeps, for tests to inspect.
    """

    def __init__(
        self,
        replies: Sequence[Reply] | ReplyFunction | None = None,
        *,
        name: str = "mock",
        logprob: float = -0.5,
        latency_s: float = 0.0,
        max_sessions: int = 4096,
        keep_requests: int = 1000,
    ) -> None:
        if replies is not None and not callable(replies):
            replies = list(replies)
            if not replies:
                raise ValueError(
                    "MockModel needs at least one reply; pass replies=None for the default policy"
                )
            for reply in replies:
                if not isinstance(reply, str | BaseException):
                    raise ValueError(
                        f"MockModel replies must be strings or exceptions, got {type(reply).__name__}"
                    )
        if max_sessions < 1:
            raise ValueError(f"MockModel max_sessions must be at least 1, got {max_sessions}")
        self.name = name
        self.replies = replies
        self.logprob = logprob
        self.latency_s = latency_s
        self.max_sessions = max_sessions
        self.requests: deque[GenerationRequest] = deque(maxlen=keep_requests)
        """The most recent requests received, oldest first (for tests)."""
        self._contexts: dict[str, list[int]] = {}
        self._pending_forced: dict[str, list[int]] = {}
        self._calls: dict[str, int] = {}
        self._replies: dict[str, int] = {}
        """Replies so far in each session's live context (its `Generation.session_turn`)."""
        self._closed = False

    # ----- inspection ----------------------------------------------------------------------
    def context(self, session: str) -> list[int]:
        """Every id the session has seen so far: prompts, sampled ids and forced ids, in order."""
        return list(self._contexts.get(session, ())) + self._pending_forced.get(session, [])

    @property
    def sessions(self) -> list[str]:
        """Sessions with live context."""
        return list(self._contexts)

    # ----- Model API ----------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> Generation:
        if self._closed:
            raise ModelError(f"{self.name}: the model is closed; create a new one")
        started = time.perf_counter()
        self.requests.append(request)
        session = request.session
        turn = 0
        if session is not None:
            turn = self._calls.get(session, 0)
            self._calls[session] = turn + 1
        if self.replies is None:
            reply = self._default_reply(request, turn)
        else:
            reply = await self._reply(request, turn)

        prompt_ids = self._pending_forced.pop(session, []) if session is not None else []
        if request.prompt_ids is not None:
            prompt_ids.extend(request.prompt_ids)
        else:
            for message in request.messages:
                prompt_ids += render_message(message)
        prompt_ids.append(ROLE_IDS["assistant"])

        text, token_ids, finish_reason = self._sample(reply, request)
        session_turn: int | None = None
        if session is not None:
            session_turn = self._replies.get(session, 0)
            self._replies[session] = session_turn + 1
            context = self._contexts.pop(session, None) or []
            self._contexts[session] = context  # re-inserted: dict order is recency order
            if len(self._contexts) > self.max_sessions:
                await self.end_session(next(iter(self._contexts)))
            context.extend(prompt_ids)
            context.extend(token_ids)
            if finish_reason != "stop" or token_ids[-1:] != [END_ID]:
                # Cut off before its end-of-turn id: the template's end is forced into the
                # context and shows up in the next call's prompt ids (mask 0), never as sampled.
                self._pending_forced[session] = [END_ID]
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        elapsed = time.perf_counter() - started
        # trusted: the fields are built here; validation would dominate the cost of a mock call
        # in throughput benchmarks.
        return trusted(
            Generation,
            {
                "text": text,
                "prompt_ids": prompt_ids,
                "token_ids": token_ids,
                "logprobs": [self.logprob] * len(token_ids),
                "loss_mask": [1] * len(token_ids),
                "session_turn": session_turn,
                "finish_reason": finish_reason,
                "model": self.name,
                "timings": {"total": elapsed},
            },
        )

    async def end_session(self, session: str) -> None:
        self._contexts.pop(session, None)
        self._pending_forced.pop(session, None)
        self._calls.pop(session, None)
        self._replies.pop(session, None)

    async def close(self) -> None:
        self._closed = True
        self._contexts.clear()
        self._pending_forced.clear()

    # ----- internals ----------------------------------------------------------------------
    async def _reply(self, request: GenerationRequest, turn: int) -> str:
        replies = self.replies
        if replies is None:
            return self._default_reply(request, turn)
        if callable(replies):
            answer: Any = replies(request)
            if inspect.isawaitable(answer):
                answer = await answer
            if not isinstance(answer, str):
                raise ModelError(f"{self.name}: the reply function returned {type(answer).__name__}, not str")
            return answer
        scripted = replies[turn % len(replies)]
        if isinstance(scripted, BaseException):
            raise scripted
        return scripted

    def _default_reply(self, request: GenerationRequest, turn: int) -> str:
        legal = legal_actions_in(request.messages)
        if not legal:
            return "ok"
        key = f"{request.sampling.seed}/{request.session}/{turn}".encode()
        return f"<answer>{legal[zlib.crc32(key) % len(legal)]}</answer>"

    def _sample(self, reply: str, request: GenerationRequest) -> tuple[str, list[int], str]:
        """Text, sampled ids and finish reason, as an engine with these sampling limits would give."""
        sampling = request.sampling
        cuts = [reply.find(stop) + len(stop) for stop in sampling.stop if stop and stop in reply]
        if cuts:
            # A stop string ends the generation (kept in the text) before any end-of-turn id.
            reply = reply[: min(cuts)]
            ids = encode_text(reply)
        else:
            ids = [*encode_text(reply), END_ID]
        if len(ids) <= sampling.max_new_tokens:
            return reply, ids, "stop"
        ids = ids[: max(sampling.max_new_tokens, 0)]
        return decode_ids(ids), ids, "length"
