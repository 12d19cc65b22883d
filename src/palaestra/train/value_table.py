"""A lookup-table critic: V(s) as the running mean of the returns that followed each exact context.

MARS judges a turn by its return against the mean over every turn of its seat, so most of a
turn's advantage says how good its *position* was, not its move: in a won position every move
looks good, in a lost one every move bad, and a game's outcome swamps the difference one move
makes. A baseline that depends on the position removes that part of the noise without biasing the
gradient. A learned value head has to learn it, from the same few thousand noisy returns; when
positions recur (board games from a fixed start, small state spaces, the first turns of any task)
a table can simply count them.

The state of a turn is the exact token context its answer was sampled from: every prompt and
answer id since the model's context last began afresh, up to and including the turn's prompt
(`Trajectory.context_starts`). Its value is shrunk towards a coarser estimate for the same game,
seat and turn number while it has few visits:

    V(s) = (n_s · m_s + prior · m_(game, role, k)) / (n_s + prior)

where m is a running mean of the targets seen (the step's λ-returns: with λ = 1 the discounted
returns), with step size max(1/n, rate) so that it follows a changing policy after the first
visits. Unseen contexts get the coarse mean, and with nothing seen, 0. A task whose contexts
never repeat thus gets a per-(seat, turn number) baseline, no worse than the batch mean.

Values are read before the step's update and the table learns from the step's targets after,
so no turn's own return is in its baseline.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from palaestra.train.rewards import Trajectory

Entry = list[float]  # [visits, running mean]


class ValueTable:
    """Running means of returns per exact context and per (game, role, turn number)."""

    def __init__(self, *, rate: float = 0.05, prior: float = 4.0, max_entries: int = 500_000) -> None:
        if not 0 < rate <= 1:
            raise ValueError(f"value table rate must be in (0, 1], got {rate!r}")
        if prior < 0:
            raise ValueError(f"value table prior must be >= 0, got {prior!r}")
        self.rate = rate
        self.prior = prior
        self.max_entries = max_entries
        # Least recently updated first, so a task whose contexts never repeat cannot grow it
        # without bound.
        self.states: OrderedDict[bytes, Entry] = OrderedDict()
        self.coarse: dict[Hashable, Entry] = {}

    @staticmethod
    def state_keys(trajectory: Trajectory) -> list[bytes]:
        """One key per turn: a digest of the token context the turn's answer was sampled from."""
        keys: list[bytes] = []
        digest = hashlib.blake2b(digest_size=16)
        for turn, prompt in enumerate(trajectory.prompt_ids):
            fresh = turn == 0 or (turn < len(trajectory.context_starts) and trajectory.context_starts[turn])
            if fresh:
                digest = hashlib.blake2b(trajectory.game.encode(), digest_size=16)
            digest.update(_pack(prompt))
            keys.append(digest.digest())
            digest.update(b"|" + _pack(trajectory.token_ids[turn]))
        return keys

    def values(
        self, trajectories: Sequence[Trajectory], keys: Sequence[list[bytes]] | None = None
    ) -> tuple[list[list[float]], float]:
        """V(s_k) for every turn of every trajectory, and the share of turns whose context had
        been seen before. `keys`: the trajectories' `state_keys`, when already computed."""
        if keys is None:
            keys = [self.state_keys(t) for t in trajectories]
        values: list[list[float]] = []
        seen = turns = 0
        for trajectory, turn_keys in zip(trajectories, keys, strict=True):
            row = []
            for k, key in enumerate(turn_keys[: trajectory.num_turns]):
                coarse = self.coarse.get((trajectory.game, trajectory.role, k))
                fallback = coarse[1] if coarse is not None else 0.0
                entry = self.states.get(key)
                if entry is None:
                    row.append(fallback)
                else:
                    visits, mean = entry
                    row.append((visits * mean + self.prior * fallback) / (visits + self.prior))
                    seen += 1
                turns += 1
            values.append(row)
        return values, seen / turns if turns else 0.0

    def update(
        self,
        trajectories: Sequence[Trajectory],
        targets: Sequence[Sequence[float]],
        keys: Sequence[list[bytes]] | None = None,
    ) -> None:
        """Move each turn's context (and its coarse key) towards the turn's target. `keys`: the
        trajectories' `state_keys`, when already computed."""
        if keys is None:
            keys = [self.state_keys(t) for t in trajectories]
        for trajectory, turn_targets, turn_keys in zip(trajectories, targets, keys, strict=True):
            for k, (key, target) in enumerate(zip(turn_keys, turn_targets, strict=False)):
                self._learn(self.coarse, (trajectory.game, trajectory.role, k), target)
                self._learn(self.states, key, target)
                self.states.move_to_end(key)
        while len(self.states) > self.max_entries:
            self.states.popitem(last=False)

    def _learn(self, table: dict[Any, Entry], key: Any, target: float) -> None:
        entry = table.setdefault(key, [0.0, 0.0])
        entry[0] += 1
        entry[1] += max(1.0 / entry[0], self.rate) * (target - entry[1])

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs to read the same values (checkpoints keep it)."""
        return {"states": list(self.states.items()), "coarse": list(self.coarse.items())}

    def load(self, state: dict[str, Any]) -> None:
        self.states = OrderedDict((key, list(entry)) for key, entry in state["states"])
        self.coarse = {tuple(key): list(entry) for key, entry in state["coarse"]}


def _pack(ids: Sequence[int]) -> bytes:
    return array("q", ids).tobytes()
