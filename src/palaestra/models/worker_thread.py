"""The worker-thread plumbing the batching engines share (`LocalEngine`, `VLLMEngine`).

Each engine turns `generate` calls from any event loop into jobs that one worker thread batches;
the callers await a future the worker resolves. This base class holds what does not depend on
how a batch is run: submitting and awaiting a job, stopping and joining the worker, and reading a
session's token-exact context.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from palaestra.core.records import Generation
from palaestra.models.base import GenerationRequest


class WorkerThreadEngine:
    """Base of engines whose calls are batched by one worker thread.

    A subclass sets `_lock`, `_wake` (a `threading.Condition` on `_lock`), `_closing`, `_worker`
    and `_sessions` (session id -> an object with `ids`) in its constructor, and implements
    `_make_job(request, loop)` returning a job whose `future` the worker resolves.
    """

    _lock: threading.Lock
    _wake: threading.Condition
    _closing: bool
    _worker: threading.Thread
    _sessions: dict[str, Any]

    def _make_job(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> Any:
        raise NotImplementedError

    async def generate(self, request: GenerationRequest) -> Generation:
        """Extend the request's session with its new messages and sample a reply."""
        job = self._make_job(request, asyncio.get_running_loop())
        generation: Generation = await job.future
        return generation

    async def close(self) -> None:
        """Stop the worker; waiting and running calls fail with ModelError."""
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        """`close` for synchronous callers."""
        self._stop_worker()

    def _stop_worker(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if threading.current_thread() is not self._worker:
            self._worker.join()

    def session_ids(self, session: str) -> list[int]:
        """The session's token-exact context so far: every prompt delta and sampled id, in order."""
        with self._lock:
            state = self._sessions.get(session)
            if state is None:
                raise KeyError(f"no session {session!r}")
            return list(state.ids)
