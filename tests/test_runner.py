"""The episode runner: streaming records, resume after SIGKILL, fault isolation, flat memory."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from palaestra.agents.base import AgentError, AgentView
from palaestra.core.records import Episode
from palaestra.rollout.runner import (
    EPISODES_FILE,
    RunConfig,
    RunError,
    RunSummary,
    iter_episodes,
    run_episodes,
    run_sync,
    scan_episodes,
)

REPO = Path(__file__).resolve().parents[1]


def palaestra_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "palaestra", *args]


def read_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        ids.append(Episode.from_json(line).id)
    return ids


def test_run_writes_one_parseable_line_per_episode(tmp_path: Path) -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "first"], episodes=40, seed=3)
    summary = run_sync(config, tmp_path)
    ids = read_ids(tmp_path / EPISODES_FILE)
    assert sorted(ids) == [f"{i:06d}" for i in range(40)]
    assert summary.total == 40 and summary.statuses == {"ok": 40}
    episode = next(iter_episodes(tmp_path / EPISODES_FILE))
    assert episode.agents == {"player_0": "random", "player_1": "first"}
    assert episode.turns[0].player == "player_0"
    assert episode.turns[0].observation[0].role == "system"
    # The per-turn rewards of each player add up to its return.
    for player, value in episode.returns.items():
        assert sum(t.reward for t in episode.player_turns(player)) == pytest.approx(value)


def test_same_seed_gives_same_episodes(tmp_path: Path) -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=20, seed=11)
    run_sync(config, tmp_path / "a")
    run_sync(config, tmp_path / "b")

    def moves(folder: Path) -> dict[str, list[str]]:
        return {e.id: [str(t.action) for t in e.turns] for e in iter_episodes(folder / EPISODES_FILE)}

    assert moves(tmp_path / "a") == moves(tmp_path / "b")


def test_rerun_skips_finished_and_extends(tmp_path: Path) -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=30)
    run_sync(config, tmp_path)
    more = config.model_copy(update={"episodes": 50})
    summary = run_sync(more, tmp_path)
    assert summary.skipped == 30 and summary.total == 50
    ids = read_ids(tmp_path / EPISODES_FILE)
    assert len(ids) == 50 == len(set(ids))


def test_rerun_with_other_settings_is_refused(tmp_path: Path) -> None:
    run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=2), tmp_path)
    with pytest.raises(RunError, match="different run"):
        run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["first", "random"], episodes=2), tmp_path)


def test_unknown_agent_and_wrong_seat_count_fail_before_writing(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="unknown agent"):
        run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["random", "nobody"], episodes=2), tmp_path / "x")
    with pytest.raises(RunError, match="seats"):
        run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["random"], episodes=2), tmp_path / "y")
    assert not (tmp_path / "x" / EPISODES_FILE).exists()


def test_corrupt_and_half_written_lines_are_skipped_and_repaired(tmp_path: Path) -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=10)
    run_sync(config, tmp_path)
    path = tmp_path / EPISODES_FILE
    lines = path.read_text().splitlines(keepends=True)
    # Damage episode 3 in the middle and leave a half-written line at the end.
    lines[3] = "{this is not json\n"
    path.write_text("".join(lines) + lines[5][:40])
    summary = run_sync(config, tmp_path)
    assert summary.corrupt_lines == 1
    valid = list(iter_episodes(path))
    assert sorted({e.id for e in valid}) == [f"{i:06d}" for i in range(10)]
    assert path.read_text().endswith("\n")


def test_alternate_seats(tmp_path: Path) -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["first", "random"], episodes=6, alternate_seats=True)
    run_sync(config, tmp_path)
    seatings = {e.id: e.agents["player_0"] for e in iter_episodes(tmp_path / EPISODES_FILE)}
    assert [seatings[f"{i:06d}"] for i in range(6)] == ["first", "random"] * 3


class FlakyAgent:
    """Raises on ~10% of its turns and hangs on ~5%; otherwise plays randomly."""

    async def act(self, view: AgentView) -> str:
        rng = random.Random(view.seed)
        roll = rng.random()
        if roll < 0.10:
            raise RuntimeError(f"flaky failure at step {view.step}")
        if roll < 0.15:
            await asyncio.sleep(3600)
        assert view.legal_actions
        return rng.choice(list(view.legal_actions))


def test_failing_and_hanging_agents_are_recorded_not_fatal(tmp_path: Path) -> None:
    config = RunConfig(
        env_id="tic_tac_toe-v0",
        agents=["flaky", "flaky"],
        episodes=120,
        concurrency=120,
        turn_timeout_s=0.2,
    )
    summary = asyncio.run(run_episodes(config, tmp_path, factories={"flaky": FlakyAgent}))
    episodes = list(iter_episodes(tmp_path / EPISODES_FILE))
    assert len(episodes) == 120 == len({e.id for e in episodes})
    by_status = {s: [e for e in episodes if e.status == s] for s in ("ok", "error", "timeout")}
    assert by_status["error"] and by_status["timeout"] and by_status["ok"]
    assert all("RuntimeError: flaky failure" in (e.cause or "") for e in by_status["error"])
    assert all("no action within 0.2s" in (e.cause or "") for e in by_status["timeout"])
    assert summary.statuses == {s: len(v) for s, v in by_status.items() if v}
    # A failed episode keeps the turns played before the failure.
    assert any(e.turns for e in by_status["error"])


def test_episode_timeout(tmp_path: Path) -> None:
    class Slow:
        async def act(self, view: AgentView) -> str:
            await asyncio.sleep(0.05)
            assert view.legal_actions
            return view.legal_actions[0]

    config = RunConfig(env_id="tic_tac_toe-v0", agents=["slow", "slow"], episodes=2, episode_timeout_s=0.12)
    asyncio.run(run_episodes(config, tmp_path, factories={"slow": Slow}))
    episodes = list(iter_episodes(tmp_path / EPISODES_FILE))
    assert {e.status for e in episodes} == {"timeout"}
    assert all("episode timeout" in (e.cause or "") for e in episodes)


SLOW_AGENT = textwrap.dedent(
    """
    import asyncio, random

    class SlowRandom:
        async def act(self, view):
            await asyncio.sleep(0.002)
            return random.Random(view.seed).choice(list(view.legal_actions))
    """
)


def test_sigkill_half_way_then_rerun_completes(tmp_path: Path) -> None:
    (tmp_path / "slow_agent_mod.py").write_text(SLOW_AGENT)
    out = tmp_path / "run"
    args = palaestra_cmd(
        "run", "tic_tac_toe-v0", "--agents", "py:slow_agent_mod:SlowRandom,random",
        "--episodes", "500", "--concurrency", "8", "--out", str(out), "--no-progress",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = out / EPISODES_FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= 250:
            break
        if process.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {process.stderr.read().decode()}")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = path.read_bytes().count(b"\n")
    assert 250 <= written < 500, "the kill must land half way"

    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "already done, skipped" in rerun.stdout
    ids = read_ids(path)  # every line parses
    assert len(ids) == 500 == len(set(ids))


def test_cli_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    cases = [
        ("run", "no_such_game-v0", "--agents", "random,random", "--out", str(tmp_path / "a")),
        ("run", "tic_tac_toe-v0", "--agents", "random,nobody", "--out", str(tmp_path / "b")),
        ("run", "tic_tac_toe-v0", "--agents", "random,random", "-o", "bogus=1", "--out", str(tmp_path / "c")),
    ]
    for case in cases:
        result = subprocess.run(palaestra_cmd(*case), capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (case, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert "Traceback" not in result.stderr


def test_scan_counts_outcomes(tmp_path: Path) -> None:
    config = RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"], episodes=30)
    run_sync(config, tmp_path)
    summary = RunSummary(out_dir=tmp_path)
    done = scan_episodes(tmp_path / EPISODES_FILE, summary)
    assert len(done) == 30
    first = summary.seats[("player_0", "random")]
    second = summary.seats[("player_1", "random")]
    assert first.wins == second.losses and first.draws == second.draws
    assert first.episodes == 30


def test_memory_stays_flat_over_100k_episodes(tmp_path: Path) -> None:
    """100,000 random-vs-random episodes stream to disk with peak RSS under 300 MB."""
    script = textwrap.dedent(
        f"""
        from palaestra.rollout.runner import RunConfig, run_sync
        summary = run_sync(RunConfig(env_id="tic_tac_toe-v0", agents=["random", "random"],
                                     episodes=100_000, concurrency=64), {str(tmp_path)!r})
        assert summary.total == 100_000, summary.total
        # VmHWM is this process's own peak; ru_maxrss would carry over the parent's peak, since
        # Linux keeps it across fork and exec.
        status = open("/proc/self/status").read()
        print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB"
    with (tmp_path / EPISODES_FILE).open("rb") as handle:
        assert sum(1 for _ in handle) == 100_000
    json.loads((tmp_path / "run.json").read_text())
