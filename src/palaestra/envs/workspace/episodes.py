"""Snapshots of a workspace env's episode, shared by `workspace-v0`, `code-v0` and `tictoc-v0`.

An episode is its store (by default the env's `sandbox`), the episode record the env keeps in
`_state` (read through `_current()`) and the seat's call counter; a snapshot copies all three so
restoring it replays exactly. Each env says which episode fields its state hash covers.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any


class EpisodeSnapshots:
    """`close`, `snapshot`, `restore` and `state_hash` for an env with `sandbox`, `seat`, `_state`
    and `_current()`. An env with another store overrides `close` and the three `_store_*` hooks."""

    def close(self) -> None:
        self.sandbox.close()

    def snapshot(self) -> tuple[Any, Any, int]:
        return self._store_image(), copy.deepcopy(self._current()), self.seat.call_counter

    def restore(self, snapshot: tuple[Any, Any, int]) -> None:
        image, state, counter = snapshot
        self._load_store_image(image)
        self._state = copy.deepcopy(state)
        self.seat.call_counter = counter

    def state_hash(self) -> str:
        summary = json.dumps(self._hash_fields(self._current()), default=str)
        return hashlib.sha256(f"{self._store_hash()}|{summary}".encode()).hexdigest()

    def _hash_fields(self, state: Any) -> list[Any]:
        """The episode fields (JSON-able) that the state hash covers, besides the store."""
        raise NotImplementedError

    def _store_image(self) -> Any:
        return self.sandbox.snapshot()

    def _load_store_image(self, image: Any) -> None:
        self.sandbox.restore(image)

    def _store_hash(self) -> str:
        return self.sandbox.state_hash()

    # The env defines these (and `_current()`); declared here so the mixin reads as what it needs.
    sandbox: Any
    seat: Any
    _state: Any


__all__ = ["EpisodeSnapshots"]
