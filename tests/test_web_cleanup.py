"""Nothing outlives a web run: no Chromium, no Playwright driver, whether the run is killed outright
(SIGKILL), terminated (SIGTERM) or ends without closing its env.

Each run is a subprocess carrying a marker in its environment, which every process it starts
inherits (the driver, Chromium and its helpers); after the run ends, no process with the marker may
be left. The sites are served in-process and their databases live in memory, so nothing else can
outlive it. Skipped when Chromium or Playwright is missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH")
pytest.importorskip("playwright.async_api", reason="playwright is not installed")

MARK = "PALAESTRA_WEB_TEST_MARK"
SCRIPT = """
import sys, time
from palaestra.envs.web.env import WebEnv
env = WebEnv(task="shop.buy_lamp")
env.reset(seed=0)
print("ready", flush=True)
if sys.argv[1] == "wait":
    time.sleep(120)
"""  # "exit": leave without closing the env (atexit must clean up)


def marked(marker: str, exclude: int | None = None) -> list[int]:
    """Live processes whose environment holds the marker (zombies have an empty environ)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{MARK}={marker}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def start(args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    marker = uuid.uuid4().hex
    process = subprocess.Popen(
        args, env={**os.environ, MARK: marker}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return process, marker


def wait_for_browser(process: subprocess.Popen[bytes], marker: str, timeout: float = 60) -> None:
    """Until Chromium runs under the process (the driver and a browser beside the process itself)."""
    deadline = time.monotonic() + timeout
    while len(marked(marker, exclude=process.pid)) < 2:
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        assert time.monotonic() < deadline, "Chromium did not start"
        time.sleep(0.2)


def assert_nothing_left(marker: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = []
    for pid in left:
        try:
            names.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
        except OSError:
            continue
    assert not left, f"left behind: {names}"


def kill(process: subprocess.Popen[bytes], signum: int) -> int:
    process.send_signal(signum)
    try:
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_killed_run_leaves_no_browser_behind(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "palaestra", "run", "web-v0", "--agents", "web_random",
           "--episodes", "20", "--concurrency", "2", "--out", str(tmp_path / "run")]  # fmt: skip
    process, marker = start(run)
    wait_for_browser(process, marker)
    assert kill(process, signal.SIGKILL) == -signal.SIGKILL
    assert_nothing_left(marker)


def test_sigterm_closes_the_browser_of_a_plain_script() -> None:
    process, marker = start([sys.executable, "-c", SCRIPT, "wait"])
    wait_for_browser(process, marker)
    assert kill(process, signal.SIGTERM) == -signal.SIGTERM  # the handler closes, then dies of it
    assert_nothing_left(marker)


def test_exiting_without_closing_the_env_leaves_nothing() -> None:
    process, marker = start([sys.executable, "-c", SCRIPT, "exit"])
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output.decode()
    assert_nothing_left(marker, timeout=5)


@pytest.mark.slow
def test_sigterm_stops_a_run_and_leaves_nothing(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "palaestra", "run", "web-v0", "--agents", "web_random",
           "--episodes", "20", "--concurrency", "2", "--out", str(tmp_path / "run")]  # fmt: skip
    process, marker = start(run)
    wait_for_browser(process, marker)
    assert kill(process, signal.SIGTERM) == 1  # interrupted: the finished episodes are kept
    assert_nothing_left(marker)
