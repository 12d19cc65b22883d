"""Multi-process updates through `accelerate`: DDP today, FSDP by accelerate's own config.

`palaestra train` runs unchanged under `accelerate launch` (or `torchrun`): each process plays its
own rollouts (its seeds offset by its rank), builds its rows, and takes part in every update; the
gradients are averaged across processes by DDP (or reduced by FSDP), so all processes keep the
same weights. Only the main process writes metrics, evaluations and checkpoints.

Two details make the averaged gradient the gradient of the whole batch, not an average of
per-process losses:
- `PolicyScorer` is the module that DDP/FSDP wrap: its `forward` is `forward.token_logprobs`, so
  the trainer's own scoring pass (prefix sharing and all) runs inside the wrapper's forward, where
  its hooks expect it.
- `Distributed.normalizer(count)` is the batch-wide number of loss tokens (or sequences) divided
  by the number of processes: a process's loss `sum / normalizer` averaged over processes is
  `sum over every process / batch-wide count`, the single-process token-mean. Processes with
  uneven row counts (they play different games) still get the exact gradient.

Every process must run the same number of backward passes (a collective op waits for everyone),
so the trainer agrees on the number of minibatches and feeds a zero-weight dummy row to a process
whose minibatch came out empty.

`Distributed.from_environment()` returns the single-process stand-in (everything a no-op, and
scoring exactly as before) unless the launcher set `WORLD_SIZE` > 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from palaestra.train.forward import TokenLogprobs, TrainBatch, TrainRow, token_logprobs


class PolicyScorer(torch.nn.Module):
    """The policy (and its value head, if any) with `token_logprobs` as its forward: what DDP and
    FSDP wrap."""

    def __init__(self, model: Any, value_head: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.model = model
        self.value_head = value_head

    def forward(
        self, batch: TrainBatch, with_entropy: bool = False, with_values: bool = False
    ) -> TokenLogprobs:
        head = self.value_head if with_values else None
        return token_logprobs(self.model, batch, with_entropy=with_entropy, value_head=head)


def dummy_row() -> TrainRow:
    """Two tokens, one target: what a process with nothing to train on scores (at weight 0), so its
    backward pass still meets the others' in the gradient all-reduce."""
    return TrainRow((0, 0), (0, 1))


class Distributed:
    """The process group as the trainer sees it. This base class is the single-process case."""

    world_size = 1
    rank = 0
    local_rank = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @staticmethod
    def from_environment(*, cpu: bool = False) -> Distributed:
        """`AccelerateDistributed` when launched with `WORLD_SIZE` > 1, else the single process."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return AccelerateDistributed(cpu=cpu)
        return Distributed()

    def device(self, configured: str) -> str:
        """The device this process's model lives on (`cuda:LOCAL_RANK` for several GPU processes)."""
        return configured

    value_head: torch.nn.Module | None = None

    def prepare(
        self, model: Any, optimizer: torch.optim.Optimizer, value_head: torch.nn.Module | None = None
    ) -> tuple[Any, Any]:
        """The scorer to call for log-probs with gradient, and the optimizer to step (which must
        already hold `value_head`'s parameters, if there is one)."""
        self.value_head = value_head
        return model, optimizer

    def prepare_optimizer(self, optimizer: torch.optim.Optimizer) -> Any:
        return optimizer

    def score(
        self, scorer: Any, batch: TrainBatch, *, with_entropy: bool = False, with_values: bool = False
    ) -> TokenLogprobs:
        """Log-probs (and the value head's values) with gradient through what `prepare` returned."""
        head = self.value_head if with_values else None
        return token_logprobs(scorer, batch, with_entropy=with_entropy, value_head=head)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)

    def sum(self, value: float) -> float:
        """`value` summed over every process."""
        return value

    def normalizer(self, count: float) -> float | None:
        """The loss normalizer for `count` local loss tokens (or sequences); None alone (the loss
        then normalizes by its own count, exactly as before)."""
        return None

    def barrier(self) -> None:
        """Wait until every process got here."""

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first (e.g. writes a folder), the others after it."""
        yield


class AccelerateDistributed(Distributed):
    """Several processes under `accelerate launch`/`torchrun`, through `accelerate.Accelerator`.

    The accelerate config decides DDP or FSDP (see docs/scaling.md); on CPU (`cpu=True`, or no
    GPU) the process group uses gloo.
    """

    def __init__(self, *, cpu: bool = False) -> None:
        try:
            from accelerate import Accelerator
        except ImportError as exc:
            raise RuntimeError(
                "multi-process training needs accelerate: pip install 'palaestra[distributed]'"
            ) from exc
        self.accelerator = Accelerator(cpu=cpu or not torch.cuda.is_available())
        state = self.accelerator.state
        self.world_size = state.num_processes
        self.rank = state.process_index
        self.local_rank = state.local_process_index

    def device(self, configured: str) -> str:
        if configured == "cpu" or self.accelerator.device.type == "cpu":
            return "cpu"
        return str(self.accelerator.device)

    def prepare(
        self, model: Any, optimizer: torch.optim.Optimizer, value_head: torch.nn.Module | None = None
    ) -> tuple[Any, Any]:
        scorer, prepared = self.accelerator.prepare(PolicyScorer(model, value_head), optimizer)
        return scorer, prepared

    def prepare_optimizer(self, optimizer: torch.optim.Optimizer) -> Any:
        return self.accelerator.prepare(optimizer)

    def score(
        self, scorer: Any, batch: TrainBatch, *, with_entropy: bool = False, with_values: bool = False
    ) -> TokenLogprobs:
        return scorer(batch, with_entropy=with_entropy, with_values=with_values)  # type: ignore[no-any-return]

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip_grad_norm_(self, parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        return self.accelerator.clip_grad_norm_(list(parameters), max_norm)  # type: ignore[no-any-return]

    def sum(self, value: float) -> float:
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="sum").item())

    def normalizer(self, count: float) -> float | None:
        return max(self.sum(count), 1.0) / self.world_size

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        with self.accelerator.main_process_first():
            yield


__all__ = ["AccelerateDistributed", "Distributed", "PolicyScorer", "dummy_row"]
