"""Run many episodes concurrently, stream them to `episodes.jsonl`, and resume after a crash.

A run folder holds `run.json` (the configuration, so a rerun can check it is the same run) and
`episodes.jsonl` (one finished episode per line, appended with a single `write` each, so a killed
run leaves only whole lines). Rerunning with the same folder skips every episode id already
written; a half-written last line is cut off first. Statistics are accumulated as episodes stream
by, so memory stays flat in the number of episodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from palaestra.agents.base import AgentFactory, agent_factory
from palaestra.core.records import Episode
from palaestra.core.registry import EnvError, make, spec
from palaestra.rollout.episode import play_episode

EPISODES_FILE = "episodes.jsonl"
RUN_FILE = "run.json"
_ID_PREFIX = re.compile(rb'^\{"version":\d+,"id":"([^"]+)"')


class RunError(ValueError):
    """A user-facing problem with a run (bad config, a folder holding another run)."""


class RunConfig(BaseModel):
    """What to run. Written to `run.json`; a rerun must match it (except `episodes`, which may grow).

    Fields:
        env_id: the registry id.
        env_options: options passed to `make`.
        agents: one agent spec per seat, in seat order.
        episodes: how many episodes; ids are `000000`, `000001`, ...
        seed: episode i is reset with seed `seed + i // group_size`.
        group_size: episodes sharing one env seed (GRPO-style groups); agents still get a
            different sampling seed in every episode.
        alternate_seats: when true, odd episodes reverse the seat order of the agents (for
            two-seat games: everyone plays first and second mover equally often).
        concurrency: episodes in flight at once (per worker with the Ray executor).
        turn_timeout_s: per agent decision; None for no limit.
        episode_timeout_s: per episode; None for no limit.
        executor: where episodes run: `local` (asyncio in this process) or
            `ray[:ADDRESS][?workers=N&cpus=C&gpus=G&chunk=K]` (Ray actors, see
            `palaestra.rollout.ray_executor`). Not part of the run's identity: a run started
            in process may resume on Ray and back.
    """

    env_id: str
    env_options: dict[str, Any] = Field(default_factory=dict)
    agents: list[str]
    episodes: int = Field(ge=1)
    seed: int = 0
    group_size: int = Field(default=1, ge=1)
    alternate_seats: bool = False
    concurrency: int = Field(default=32, ge=1)
    turn_timeout_s: float | None = Field(default=60.0, gt=0)
    episode_timeout_s: float | None = Field(default=3600.0, gt=0)
    executor: str = "local"

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        from palaestra.rollout.ray_executor import parse_executor

        parse_executor(value)  # ExecutorError (a ValueError) names what is wrong
        return value.strip() or "local"

    def identity(self) -> dict[str, Any]:
        """The fields that make two runs the same run (the rest may change on a rerun)."""
        return self.model_dump(
            include={"env_id", "env_options", "agents", "seed", "group_size", "alternate_seats"}
        )

    def env_seed(self, index: int) -> int:
        return self.seed + index // self.group_size

    def seating(self, index: int) -> list[str]:
        if self.alternate_seats and index % 2 == 1:
            return list(reversed(self.agents))
        return list(self.agents)


@dataclass
class SeatStats:
    """Outcomes of one agent in one seat, accumulated episode by episode."""

    episodes: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    return_sum: float = 0.0
    return_sq_sum: float = 0.0

    def add(self, outcome: str, value: float) -> None:
        self.episodes += 1
        self.return_sum += value
        self.return_sq_sum += value * value
        if outcome == "win":
            self.wins += 1
        elif outcome == "draw":
            self.draws += 1
        else:
            self.losses += 1

    @property
    def mean_return(self) -> float:
        return self.return_sum / self.episodes if self.episodes else 0.0

    @property
    def stderr(self) -> float:
        if self.episodes < 2:
            return 0.0
        mean = self.mean_return
        variance = max(self.return_sq_sum / self.episodes - mean * mean, 0.0)
        return float((variance / (self.episodes - 1)) ** 0.5)


@dataclass
class RunSummary:
    """What a run produced: counts by status, per (seat, agent) outcomes, and example causes."""

    out_dir: Path
    total: int = 0
    skipped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    seats: dict[tuple[str, str], SeatStats] = field(default_factory=dict)
    causes: dict[str, int] = field(default_factory=dict)
    corrupt_lines: int = 0
    interrupted: bool = False

    def add(self, record: dict[str, Any]) -> None:
        """Fold one episode (its JSON form, or any dict with the same fields) into the summary."""
        self.add_result(
            record.get("status", "ok"),
            record.get("cause"),
            record.get("returns", {}),
            record.get("agents", {}),
        )

    def add_result(
        self, status: str, cause: str | None, returns: dict[str, float], agents: dict[str, str]
    ) -> None:
        self.total += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != "ok":
            cause = cause or "unknown"
            if cause in self.causes or len(self.causes) < 50:
                self.causes[cause] = self.causes.get(cause, 0) + 1
            return
        if not returns:
            return
        best, worst = max(returns.values()), min(returns.values())
        for player, value in returns.items():
            if best == worst:
                outcome = "draw"
            elif value == best and list(returns.values()).count(best) == 1:
                outcome = "win"
            else:
                outcome = "loss"
            key = (player, agents.get(player, "?"))
            self.seats.setdefault(key, SeatStats()).add(outcome, value)


def episode_id(index: int) -> str:
    return f"{index:06d}"


def _repair_tail(path: Path) -> None:
    """Cut a half-written last line (a run killed mid-write) so appends start on a fresh line."""
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        chunk = min(size, 1 << 20)
        while True:
            handle.seek(size - chunk)
            data = handle.read(chunk)
            cut = data.rfind(b"\n")
            if cut >= 0:
                handle.truncate(size - chunk + cut + 1)
                return
            if chunk == size:
                handle.truncate(0)
                return
            chunk = min(size, chunk * 4)


def scan_episodes(path: Path, summary: RunSummary | None = None) -> set[str]:
    """Ids of the whole, parseable episodes in `path` (folding each into `summary` if given)."""
    done: set[str] = set()
    if not path.exists():
        return done
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                ident = str(record["id"])
            except (ValueError, KeyError, TypeError):
                if summary is not None:
                    summary.corrupt_lines += 1
                continue
            if ident in done:
                continue
            done.add(ident)
            if summary is not None:
                summary.add(record)
    return done


def iter_episodes(path: Path, *, on_corrupt: Callable[[int, str], None] | None = None) -> Iterator[Episode]:
    """Stream the episodes of a file, skipping (and reporting) lines that do not parse."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield Episode.from_json(line)
            except ValueError as exc:
                if on_corrupt is not None:
                    on_corrupt(number, str(exc).splitlines()[0])


def _load_or_write_config(out_dir: Path, config: RunConfig) -> None:
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        try:
            previous = RunConfig.model_validate_json(run_file.read_text())
        except ValueError as exc:
            raise RunError(
                f"{run_file} is not a palaestra run config ({exc.__class__.__name__}); "
                "use another --out folder"
            ) from exc
        if previous.identity() != config.identity():
            changed = sorted(k for k, v in config.identity().items() if previous.identity().get(k) != v)
            raise RunError(
                f"{out_dir} holds a different run (changed: {', '.join(changed)}); "
                "use another --out folder or the same settings to resume"
            )
    tmp = run_file.with_suffix(".json.tmp")
    tmp.write_text(config.model_dump_json(indent=2))
    os.replace(tmp, run_file)


def resolve_agents(specs: Sequence[str]) -> dict[str, AgentFactory]:
    """One factory per distinct spec (raises AgentError for unknown specs, before anything runs)."""
    return {agent_spec: agent_factory(agent_spec) for agent_spec in dict.fromkeys(specs)}


class EpisodeSink:
    """Where finished episodes go, whichever executor played them: one whole line each to the run
    file (a single `write`, so a kill never leaves half of one), the summary, and the callbacks."""

    def __init__(
        self,
        fd: int | None,
        summary: RunSummary,
        total: int,
        *,
        on_episode: Callable[[Episode], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.fd = fd
        self.summary = summary
        self.total = total
        self.finished = summary.skipped
        self.on_episode = on_episode
        self.on_progress = on_progress

    def add(self, episode: Episode) -> None:
        self.add_line(
            (episode.to_json() + "\n").encode(),
            episode.status,
            episode.cause,
            episode.returns,
            episode.agents,
            episode,
        )

    def add_line(
        self,
        line: bytes,
        status: str,
        cause: str | None,
        returns: dict[str, float],
        agents: dict[str, str],
        episode: Episode | None = None,
    ) -> None:
        """One finished episode as its JSON line (newline included) and the fields the summary
        needs; `episode` is parsed from the line only when an `on_episode` callback wants it."""
        if self.fd is not None:
            os.write(self.fd, line)
        self.summary.add_result(status, cause, returns, agents)
        if self.on_episode is not None:
            self.on_episode(episode if episode is not None else Episode.from_json(line))
        self.finished += 1
        if self.on_progress is not None:
            self.on_progress(self.finished, self.total)


async def run_episodes(
    config: RunConfig,
    out_dir: str | Path | None,
    *,
    factories: dict[str, AgentFactory] | None = None,
    on_episode: Callable[[Episode], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Run (or resume) `config` into `out_dir` and return the summary of the whole run.

    With `out_dir=None` nothing is written (no resume either): episodes only reach `on_episode`,
    which is how the trainer gathers its rollouts.

    `factories` maps agent specs to factories (defaults to the agent registry), so tests and
    libraries can pass agents that have no spec string. `on_progress(done, total)` is called
    after each episode.

    With `config.executor` set to `ray...`, the episodes are played in Ray actors (which build
    the agents from their specs, and get `factories` pickled) and written here as they stream
    back; see `palaestra.rollout.ray_executor`.
    """
    spec(config.env_id)  # unknown env: EnvError before anything is written
    remote = config.executor != "local"
    agent_factories = dict(factories or {})
    missing = [s for s in dict.fromkeys(config.agents) if s not in agent_factories]
    if remote:
        from palaestra.rollout.ray_executor import check_agent_specs

        check_agent_specs(missing)  # the workers build them: a local model must not load here too
    else:
        agent_factories.update(resolve_agents(missing))
    probe = make(config.env_id, **config.env_options)  # bad options fail here, in one line
    players = list(probe.players)
    probe.close()
    if len(players) != len(config.agents):
        raise RunError(f"{config.env_id} has {len(players)} seats but {len(config.agents)} agents were given")

    fd: int | None = None
    summary = RunSummary(out_dir=Path(out_dir) if out_dir is not None else Path())
    done: set[str] = set()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _load_or_write_config(out, config)
        path = out / EPISODES_FILE
        if path.exists():
            _repair_tail(path)
        done = scan_episodes(path, summary)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    todo = [i for i in range(config.episodes) if episode_id(i) not in done]
    summary.skipped = config.episodes - len(todo)
    if on_progress is not None:
        on_progress(summary.skipped, config.episodes)
    sink = EpisodeSink(fd, summary, config.episodes, on_episode=on_episode, on_progress=on_progress)
    if remote:
        from palaestra.rollout.ray_executor import run_on_ray

        try:
            await run_on_ray(config, players, todo, sink, factories=factories)
        except asyncio.CancelledError:
            summary.interrupted = True
        finally:
            if fd is not None:
                os.close(fd)
        return summary

    queue = iter(todo)

    async def worker() -> None:
        for index in queue:
            seating = config.seating(index)
            env = make(config.env_id, **config.env_options)
            try:
                agents = {p: agent_factories[s]() for p, s in zip(players, seating, strict=True)}
                episode = await play_episode(
                    env,
                    agents,
                    episode_id=episode_id(index),
                    seed=config.env_seed(index),
                    agent_seed=config.seed + index,
                    env_id=config.env_id,
                    env_options=config.env_options,
                    agent_specs=dict(zip(players, seating, strict=True)),
                    turn_timeout=config.turn_timeout_s,
                    episode_timeout=config.episode_timeout_s,
                )
                await _close_agents(agents.values())
            finally:
                env.close()
            sink.add(episode)
            # Yield to the event loop once per episode. Agents that never await (scripted ones)
            # would otherwise keep it from running at all, and the cancelled turn-timeout timers
            # it prunes only when it runs would pile up: memory would grow with every episode.
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(worker()) for _ in range(min(config.concurrency, max(len(todo), 1)))]
    try:
        with _collector_skips_older_objects():
            await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        summary.interrupted = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if fd is not None:
            os.close(fd)
    return summary


_frozen_runs = 0


@contextlib.contextmanager
def _collector_skips_older_objects() -> Iterator[None]:
    """Keep the objects that exist when a run starts out of the garbage collector's passes.

    A full collection walks every tracked object, and a process that loaded torch holds hundreds
    of thousands of them (modules, functions, tensors' owners): a run allocates enough to set one
    off every few hundred episodes, each costing ~0.1-0.3 s. `gc.freeze` moves what exists now
    out of the collector's sight (in O(1)); the objects stay alive as usual and are handed back
    when the last concurrent run ends, so even reference cycles among them are collected then.
    """
    global _frozen_runs
    gc.freeze()
    _frozen_runs += 1
    try:
        yield
    finally:
        _frozen_runs -= 1
        if _frozen_runs == 0:
            gc.unfreeze()


async def _close_agents(agents: Any) -> None:
    for agent in agents:
        close = getattr(agent, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result


async def play_in_memory(config: RunConfig, factories: dict[str, AgentFactory]) -> list[Episode]:
    """Play `config`'s episodes without writing anything and return them in id order (how the
    trainer gathers rollouts, in process or on Ray workers)."""
    gathered: list[Episode] = []
    await run_episodes(config, None, factories=factories, on_episode=gathered.append)
    gathered.sort(key=lambda episode: episode.id)
    return gathered


def run_sync(config: RunConfig, out_dir: str | Path, **kwargs: Any) -> RunSummary:
    """`run_episodes` for callers without an event loop; Ctrl-C stops cleanly (nothing lost)."""

    async def main() -> RunSummary:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_episodes(config, out_dir, **kwargs)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        summary = RunSummary(out_dir=Path(out_dir), interrupted=True)
        scan_episodes(Path(out_dir) / EPISODES_FILE, summary)
        return summary


__all__ = [
    "EPISODES_FILE",
    "RUN_FILE",
    "EnvError",
    "EpisodeSink",
    "RunConfig",
    "RunError",
    "RunSummary",
    "SeatStats",
    "iter_episodes",
    "run_episodes",
    "run_sync",
    "scan_episodes",
]
