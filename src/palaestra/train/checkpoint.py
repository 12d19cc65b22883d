"""Checkpoints: the policy as a Hugging Face folder plus the trainer's state, written atomically.

A checkpoint is a folder `checkpoints/step_000040/` holding the model (`save_pretrained`, so it
loads anywhere as `hf:PATH`) and `trainer_state.pt` (optimizer, scheduler, RNG states, the league,
the step and the metrics needed to continue). It is written into a temporary folder first and
renamed into place, so a run killed mid-write never leaves a half checkpoint; a rerun with
`--resume` continues from the newest complete one.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step_(\d{6})$")


def rng_state() -> dict[str, Any]:
    """Every random generator the trainer draws from."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(
    run_dir: Path, step: int, model: Any, tokenizer: Any, state: dict[str, Any], keep: int
) -> Path:
    """Write checkpoint `step` atomically and keep only the newest `keep` ones."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save(state, tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of interrupted writes are ignored)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def load_state(checkpoint: Path) -> dict[str, Any]:
    # The state holds optimizer tensors, RNG tuples and plain metadata we wrote ourselves.
    return torch.load(checkpoint / STATE_FILE, weights_only=False)  # type: ignore[no-any-return]
