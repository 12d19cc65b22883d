"""Snapshots of a workspace env's episode, shared by `workspace-v0`, `code-v0` and `tictoc-v0`.

An episode is its store (by default the env's `sandbox`), the episode record the env keeps in
`_state` (read through `_current()`) and the seat's call counter; a snapshot copies all three so
restoring it replays exactly. Each env says which episode fields its state hash covers.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from palaestra.core.env import Action, InvalidAction, PlayerId, TimeStep
from palaestra.core.messages import Message
from palaestra.envs.workspace.base import AGENT


@dataclass
class AgentTurn:
    """One agent action as the seat handled it: the messages it produced so far, the budget's
    reminder (if this turn reached one), and the refusal to report (if the action was invalid)."""

    state: Any
    handled: Any
    messages: list[Message]
    reminder: str | None
    refused: tuple[InvalidAction, ...]


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

    # ----- one agent turn, the same in every workspace env -------------------------------------------
    def _begin_turn(self, actions: Mapping[PlayerId, Action], label: str) -> AgentTurn:
        """Check `actions` (one from the agent, episode not over), count the step, let the seat
        handle it (tool calls run, text read) and spend a turn of the budget."""
        state = self._current()
        if state.done:
            raise ValueError(f"{label}: the episode is over; call reset() first")
        if set(actions) != {AGENT}:
            raise ValueError(f"{label}: expected an action from 'agent' only, got {sorted(actions)}")
        state.steps += 1
        handled = self.seat.handle(AGENT, actions[AGENT])
        turn = AgentTurn(state, handled, list(handled.messages), state.budget.spend(), ())
        if handled.invalid is not None:
            state.invalid += 1
            turn.refused = (handled.invalid,)
        return turn

    def _final_step(self, turn: AgentTurn, *, observe_empty: bool = False) -> TimeStep:
        """The terminal step after `_finish`: the score as the agent's reward, the final info (the
        last messages as the agent's observation; none when there are none, unless `observe_empty`)."""
        info = dict(turn.state.final_info)
        return TimeStep(
            to_act=(),
            observations={AGENT: turn.messages} if turn.messages or observe_empty else {},
            rewards={AGENT: info["score"]},
            terminated=True,
            info=info,
            invalid_actions=turn.refused,
        )

    def _log_calls(self, turn: AgentTurn) -> None:
        """One line per tool call of the turn in the episode's log (`render`)."""
        turn.state.lines += [
            f"agent calls {name}({json.dumps(args)[:120]}) -> ok={result.ok}"
            for name, args, result in turn.handled.calls
        ]

    def _current(self) -> Any:
        raise NotImplementedError

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


__all__ = ["AgentTurn", "EpisodeSnapshots"]
