"""Running code an agent wrote: a subprocess in the sandbox with CPU-time, memory and wall-clock
limits, no network and no writes outside the sandbox.

`run_limited(script, root)` starts `python -I -B _guard.py ROOT LIMITS -- SCRIPT` in ROOT with a
bare environment (no proxies, no tokens; HOME and TMPDIR inside ROOT). The guard
(`palaestra.envs.workspace._guard`) sets the kernel limits and the audit hook before anything
else runs; the parent kills the whole process group when the wall clock runs out. The outcome
says which limit ended the run, if one did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GUARD = Path(__file__).with_name("_guard.py")
MAX_OUTPUT_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Per run: CPU seconds, address space (MiB), wall-clock seconds, largest file written (MiB)."""

    cpu_seconds: int = 10
    memory_mb: int = 512
    wall_seconds: float = 20.0
    file_mb: int = 16

    def guard_json(self) -> str:
        return json.dumps(
            {"cpu_seconds": self.cpu_seconds, "memory_mb": self.memory_mb, "file_mb": self.file_mb}
        )


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a limited run ended.

    Fields:
        returncode: the process's exit status (negative: the signal that ended it).
        stdout, stderr: what it printed (cut to 20,000 characters each).
        limit: `cpu`, `memory` or `wall` when a limit ended the run, else None.
        seconds: wall-clock seconds it took.
    """

    returncode: int
    stdout: str
    stderr: str
    limit: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.limit is None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + "\n...(cut)"


def run_limited(
    script: Path | str,
    root: Path | str,
    *,
    args: tuple[str, ...] = (),
    limits: Limits = Limits(),
    env: dict[str, str] | None = None,
) -> RunOutcome:
    """Run a Python script under the guard in `root` (its working directory and the only place it
    may write); see the module docstring."""
    root = Path(root).resolve()
    temporary = root / ".tmp"
    temporary.mkdir(exist_ok=True)
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
        "TMPDIR": str(temporary),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-I",
        "-B",
        str(GUARD),
        str(root),
        limits.guard_json(),
        "--",
        str(script),
        *args,
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=root,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    limit: str | None = None
    try:
        stdout, stderr = process.communicate(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        limit = "wall"
        _kill_group(process)
        stdout, stderr = process.communicate()
    seconds = time.monotonic() - started
    code = process.returncode
    if limit is None:
        if code in (-signal.SIGXCPU, -signal.SIGKILL) and seconds < limits.wall_seconds:
            limit = "cpu"
        elif "MemoryError" in stderr[-4000:] or "MemoryError" in stdout[-4000:]:
            limit = "memory"
    return RunOutcome(code, _cut(stdout), _cut(stderr), limit, seconds)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


__all__ = ["GUARD", "Limits", "RunOutcome", "run_limited"]
