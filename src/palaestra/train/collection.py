"""One RL step's rollouts: which games, who sits where, the branch continuations, what is stale.

Per env, `rollout.episodes_per_step` games are seated by the env's cast (`palaestra.core.casts`):
its `rollout.casts` entry or its family's default cast (service envs: the policy serves,
`scripted_user` asks), one seating drawn per episode (per group of `group_size` episodes) by
weight, one job per seating. Envs with neither (games) keep the game default: self-play (the
policy in every seat; each seat's side is its own trajectory) and league games against the
league snapshot drawn for the step, in one job whose runner swaps the seats every other game or,
with `league_seat_weights`, one job per seat. With `rollout.branch_states`, positions of those
games are replayed with several first moves (`train.branching`). The agents come from the
trainer's engines in process or, with a Ray executor, from the workers
(`train.ray_rollouts.RayRollouts`).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from palaestra.agents.base import agent_factory
from palaestra.core.casts import LEAGUE, LEARNER, Cast, CastError, default_cast
from palaestra.core.records import Episode
from palaestra.core.registry import EnvError, scorecard_for, spec
from palaestra.core.scorecards import SUCCESS_AT
from palaestra.rollout.run_episode import episode_id
from palaestra.train.branching import BranchGroup, BranchPoint, branch_factories, branch_points
from palaestra.train.rollouts import EnvSeats, League, Seating, collect, policy_factory

if TYPE_CHECKING:
    from palaestra.train.config import RolloutSection, TrainConfig
    from palaestra.train.rewards import Trajectory

POLICY, TEACHER = LEARNER, "teacher"
"""The agent labels of the policy under training and of a cold-start teacher (`LEAGUE`, from
`palaestra.core.casts`, labels its league opponent)."""

_PHASE_SEEDS = {"sft": 1, "rl": 2, "branch": 3}


def rollout_seed(train_seed: int, rank: int, phase: str, step: int, env_number: int) -> int:
    """The seed of the games of `phase` (`sft`, `rl`, `branch`) at `step` in env `env_number`.

    Each process of a multi-process run plays its own games (`rank` 0's seeds are the
    single-process ones)."""
    process = rank * 15_485_863
    return (
        train_seed * 1_000_003 + _PHASE_SEEDS[phase] * 10_000_019 + step * 10_007 + env_number * 101 + process
    ) % (2**31)


def training_cast(rollout: RolloutSection, env_id: str) -> Cast | None:
    """The cast `env_id` trains with: its `rollout.casts` entry, else its family's default; None
    for the game default (self-play and league games, shaped by `self_play` and
    `league_seat_weights`)."""
    return rollout.casts.get(env_id) or default_cast(env_id)


def cold_start_learner_seats(rollout: RolloutSection, env_id: str) -> list[str] | None:
    """The seats the cold start teacher-forces in `env_id`: the cast's fixed learner seats (a
    service env's agent seat), or None (every seat: games, where the learner plays them all)."""
    cast = training_cast(rollout, env_id)
    return list(cast.learner) if cast is not None and isinstance(cast.learner, list) else None


def check_training_casts(rollout: RolloutSection, envs: EnvSeats) -> None:
    """Every training env's cast fits the env's seats (a family default included); TrainError
    otherwise."""
    from palaestra.train.run_folder import TrainError

    for env_id in rollout.envs:
        cast = training_cast(rollout, env_id)
        if cast is not None:
            try:
                cast.check(envs.ids(env_id))
            except CastError as exc:
                raise TrainError(f"the cast of {env_id}: {exc}") from None


def check_remote_memory(config: TrainConfig, template: str) -> None:
    """TrainError when a training env's policy memory (`policy_memory`) is not the template's own:
    agents on Ray workers (`HostedAgent`) keep the template's memory."""
    from palaestra.agents.llm import LLMAgent
    from palaestra.train.run_folder import TrainError

    own = LLMAgent("mock", template=template).memory
    for env_id in config.rollout.envs:
        memory = policy_memory(config.model.memory, env_id)
        if memory not in ("auto", own):
            raise TrainError(
                f"model.memory: the policy would keep a {memory} memory in {env_id}, but agents on Ray "
                f'workers keep the {template} template\'s own ({own}); set model.memory = "{own}" or '
                'rollout.executor = "local"'
            )


def policy_memory(chosen: str, env_id: str) -> str:
    """How the policy keeps `env_id`'s conversation (`model.memory`): `auto` is a model session
    in conversation envs, whose turns show only the new messages, and the template's own choice
    (still `auto`) elsewhere."""
    if chosen != "auto":
        return chosen
    try:
        kind = spec(env_id).kind
    except EnvError:
        return "auto"
    return "session" if kind == "conversation" else "auto"


def is_policy(episode: Episode, player: str) -> bool:
    """Whether the policy under training played `player` in `episode`."""
    return episode.agents.get(player) == POLICY


def league_temperature(rollout: RolloutSection, league: League, snapshot_step: int) -> float:
    """The sampling temperature of the league opponent taken at `snapshot_step`."""
    temperature = rollout.temperature if rollout.league_temperature is None else rollout.league_temperature
    is_start_policy = snapshot_step == league.snapshots[0][0]
    if is_start_policy and rollout.first_snapshot_temperature is not None:
        return rollout.first_snapshot_temperature
    return temperature


def league_seat_counts(weights: list[float], games: int) -> list[int]:
    """Split `games` league games over the seats in proportion to `weights` (largest remainders
    first, ties to the earlier seat), so the counts always sum to `games`."""
    total = sum(weights)
    exact = [games * weight / total for weight in weights]
    counts = [int(share) for share in exact]
    by_remainder = sorted(range(len(weights)), key=lambda seat: (-(exact[seat] - counts[seat]), seat))
    for seat in by_remainder[: games - sum(counts)]:
        counts[seat] += 1
    return counts


@dataclass
class StepAgents:
    """The agents of one step's games: the policy under training and the league snapshot drawn
    for the step, from the trainer's engines (`engine`, `league_engine`) or from Ray workers
    (`remote`, a `RayRollouts`)."""

    rollout: RolloutSection
    template: str
    engine: Any
    league_engine: Any
    remote: Any
    league_temperature: float
    _remote_league: Any = field(default=None, init=False, repr=False)

    def load_league(self, snapshot_step: int, weights: dict[str, Any], policy: Any, version: int) -> None:
        """Put the snapshot's weights into the league engine; on Ray workers, first bring the
        workers' policy to `version` (a no-op when they have it)."""
        if self.remote is not None:
            self.remote.sync_policy(policy.state_dict(), version=version)
            self.remote.sync_league(weights, tag=snapshot_step)
            self._remote_league = self.remote.league(**self._league_sampling())
        else:
            self.league_engine.model.load_state_dict(weights, strict=True)
            self.league_engine.drop_caches()

    def _league_sampling(self) -> dict[str, Any]:
        return {
            "temperature": self.league_temperature,
            "top_p": self.rollout.top_p,
            "legal_retries": self.rollout.league_legal_retries,
            "legal_only": self.rollout.league_legal_only,
            "template": self.template,
        }

    def policy(self, prefix: str, temperature: float | None = None, memory: str = "auto") -> Any:
        """A factory of policy agents whose sessions start with `prefix` (jobs that run at once
        repeat episode ids: each gets its own prefix). On Ray workers the agents keep the
        template's own `memory` (the trainer checks that this is the one asked for)."""
        sampling: dict[str, Any] = {
            "temperature": self.rollout.temperature if temperature is None else temperature,
            "top_p": self.rollout.top_p,
            "max_new_tokens": self.rollout.max_new_tokens,
            "session_prefix": prefix,
            "template": self.template,
        }
        if self.remote is not None:
            return self.remote.policy(**sampling)
        return policy_factory(self.engine, memory=memory, **sampling)

    def league(self, prefix: str, memory: str = "auto") -> Any:
        """A factory of league agents (call `load_league` first)."""
        if self.remote is not None:
            return self._remote_league
        return policy_factory(
            self.league_engine, session_prefix=prefix, memory=memory, **self._league_sampling()
        )

    def gather(self, env_id: str, options: dict[str, Any], seating: Seating, **run: Any) -> Any:
        """`rollouts.collect` in process, or on the Ray workers."""
        return (collect if self.remote is None else self.remote.collect)(env_id, options, seating, **run)


@dataclass(frozen=True)
class CastPart:
    """One job of a step's games in one env: the seat labels (`POLICY`, `LEAGUE` or a fixed
    agent spec, which the runner builds), how many episodes from which seed, whether the runner
    swaps the seats every other episode, and the session prefix of its model-backed seats."""

    labels: tuple[str, ...]
    episodes: int
    seed: int
    prefix: str
    alternate_seats: bool = False


def game_default_parts(
    players: int,
    episodes: int,
    self_play_share: float,
    env_seed: int,
    seat_weights: list[float] | None,
    env_number: int,
) -> list[CastPart]:
    """The game default's jobs: `self_play_share` of the episodes in self-play (from `env_seed`),
    the rest against the league (see `_league_parts`)."""
    self_play = round(episodes * self_play_share)
    parts = []
    if self_play:
        parts.append(CastPart((POLICY,) * players, self_play, env_seed, f"self{env_number}/"))
    league_games = episodes - self_play
    if league_games:
        for part, (labels, games, job_seed, alternate) in enumerate(
            _league_parts(players, league_games, env_seed, seat_weights)
        ):
            parts.append(CastPart(labels, games, job_seed, f"league{env_number}.{part}/", alternate))
    return parts


def _league_parts(
    players: int, games: int, seed: int, seat_weights: list[float] | None
) -> list[tuple[tuple[str, ...], int, int, bool]]:
    """(labels, games, seed, alternate_seats) per league job of one env: by default one job whose
    runner swaps the seats every other episode; with seat weights, one job per seat."""
    if seat_weights is None:
        return [((POLICY, *([LEAGUE] * (players - 1))), games, seed + 500_000, True)]
    return [
        (
            tuple(POLICY if other == seat else LEAGUE for other in range(players)),
            count,
            seed + 500_000 + 100_000 * (seat + 1),
            False,
        )
        for seat, count in enumerate(league_seat_counts(seat_weights, games))
        if count
    ]


def cast_parts(
    cast: Cast, players: Sequence[str], episodes: int, group_size: int, env_seed: int, env_number: int
) -> list[CastPart]:
    """A cast's jobs: each group of `group_size` episodes (one episode when 1) draws one of the
    cast's seatings by weight, from a generator seeded by `env_seed`; the episodes of each seating
    are one job, seeded apart from the others'."""
    seatings = cast.seatings(players)
    groups = -(-episodes // group_size)
    drawn = random.Random(env_seed).choices(range(len(seatings)), [w for _, w in seatings], k=groups)
    counts = [0] * len(seatings)
    for group, index in enumerate(drawn):
        counts[index] += min(group_size, episodes - group * group_size)
    return [
        CastPart(labels, count, env_seed + 700_000 + 100_003 * index, f"cast{env_number}.{index}/")
        for index, ((labels, _), count) in enumerate(zip(seatings, counts, strict=True))
        if count
    ]


def step_parts(
    rollout: RolloutSection, envs: EnvSeats, env_number: int, self_play_share: float, env_seed: int
) -> list[CastPart]:
    """The jobs of env number `env_number` in a step whose env seed is `env_seed`."""
    env_id = rollout.envs[env_number]
    cast = training_cast(rollout, env_id)
    if cast is None:
        weights = rollout.league_seat_weights.get(env_id)
        return game_default_parts(
            envs.players(env_id), rollout.episodes_per_step, self_play_share, env_seed, weights, env_number
        )
    return cast_parts(
        cast, envs.ids(env_id), rollout.episodes_per_step, rollout.group_size, env_seed, env_number
    )


async def play_step_games(
    agents: StepAgents,
    envs: EnvSeats,
    self_play_share: float,
    seed: Callable[[int], int],
    memory: Callable[[str], str] = lambda env_id: "auto",
) -> list[Episode]:
    """Every env's games of the step, all played at once; `seed(env_number)` is the env's seed
    for the step, `memory(env_id)` the model-backed seats' memory there."""
    rollout = agents.rollout
    jobs = []
    for env_number, env_id in enumerate(rollout.envs):
        options = envs.options(env_id)
        for part in step_parts(rollout, envs, env_number, self_play_share, seed(env_number)):
            factories = {}
            if POLICY in part.labels:
                factories[POLICY] = agents.policy(part.prefix, memory=memory(env_id))
            if LEAGUE in part.labels:
                factories[LEAGUE] = agents.league(part.prefix, memory=memory(env_id))
            jobs.append(
                agents.gather(
                    env_id,
                    options,
                    Seating(labels=part.labels, factories=factories),
                    episodes=part.episodes,
                    seed=part.seed,
                    group_size=rollout.group_size,
                    alternate_seats=part.alternate_seats,
                )
            )
    batches = await asyncio.gather(*jobs)
    return [episode for batch in batches for episode in batch]


async def play_branches(
    agents: StepAgents, episodes: Sequence[Episode], seed: Callable[[int], int]
) -> list[BranchGroup]:
    """Each env's branch points in the step's `episodes` (drawn with `seed(env_number)`) and
    their continuations (one group per point, all played at once)."""
    rollout = agents.rollout
    continuation = rollout.branch_temperature
    if continuation is None:
        continuation = rollout.temperature
    jobs = []
    points: list[BranchPoint] = []
    for env_number, env_id in enumerate(rollout.envs):
        rng = random.Random(seed(env_number))
        mine = [episode for episode in episodes if episode.env_id == env_id]
        for point in branch_points(
            mine, is_policy, rng, states=rollout.branch_states, max_actions=rollout.branch_actions
        ):
            prefix = f"branch{env_number}.{len(points)}/"
            source = point.episode
            if rollout.branch_opponent == "policy":
                opponent = agents.policy(prefix + "o/", continuation)
            else:
                opponent = agents.league(prefix)
            labels = tuple(source.agents.values())
            seated: dict[str, Any] = {POLICY: agents.policy(prefix, continuation), LEAGUE: opponent}
            # Fixed seats have their recorded opening replayed too; one that counts its own turns
            # (`scripted_user` and its script) would start its script again after it.
            seated.update({label: agent_factory(label) for label in labels if label not in seated})
            factories = branch_factories(point, seated, [episode_id(i) for i in range(len(point.actions))])
            jobs.append(
                collect(
                    env_id,
                    dict(source.env_options),
                    Seating(labels=labels, factories=factories),
                    episodes=len(point.actions),
                    seed=point.seed,
                    group_size=len(point.actions),
                )
            )
            points.append(point)
    groups = await asyncio.gather(*jobs)
    return list(zip(points, groups, strict=True))


def drop_stale(
    episodes: list[Episode], version: int, max_staleness: int, dropped_before: int = 0
) -> tuple[list[Episode], dict[str, Any]]:
    """Keep the episodes whose policy weights lag at most `max_staleness` updates behind the
    weights about to be updated (`version`); count the rest (`stale_dropped_total` adds
    `dropped_before`)."""
    kept: list[Episode] = []
    lags: list[int] = []
    for episode in episodes:
        played = getattr(episode, "weight_version", None)
        lag = 0 if played is None else version - played
        if lag > max_staleness:
            continue
        kept.append(episode)
        lags.append(lag)
    dropped = len(episodes) - len(kept)
    return kept, {
        "weight_version": version,
        "stale_dropped": dropped,
        "stale_dropped_total": dropped_before + dropped,
        "weight_lag_mean": float(np.mean(lags)) if lags else 0.0,
        "weight_lag_max": max(lags, default=0),
    }


def seating_counts(episodes: Sequence[Episode]) -> dict[str, int]:
    """How many of the step's episodes had each `seat=agent` (the records' own labels): the proof of
    who sat where in training (`policy` is the learner, `league` a snapshot)."""
    counts: Counter[str] = Counter()
    for episode in episodes:
        counts.update(f"{player}={agent}" for player, agent in episode.agents.items())
    return dict(sorted(counts.items()))


def task_success_rate(episodes: Sequence[Episode]) -> float | None:
    """The share of the learner's seats that succeeded (env return at `SUCCESS_AT`), over the
    episodes of envs scored by success (service tasks); None when the step had none."""
    done = scored = 0
    for episode in episodes:
        card = scorecard_for(episode.env_id)
        if card.headline != "success" or episode.status != "ok":
            continue
        for player, agent in episode.agents.items():
            if agent == POLICY and card.scores_seat(player):
                scored += 1
                done += episode.returns.get(player, 0.0) >= SUCCESS_AT
    return done / scored if scored else None


def rollout_metrics(episodes: Sequence[Episode], trajectories: Sequence[Trajectory]) -> dict[str, Any]:
    """Outcome, legality and reward statistics of the policy's side of the rollouts (win/loss
    rates over the games with a league seat)."""
    policy_turns = illegal = 0
    wins = draws = losses = 0
    league_games = 0
    for episode in episodes:
        seats = [p for p, agent in episode.agents.items() if agent == POLICY]
        for player in seats:
            for turn in episode.player_turns(player):
                policy_turns += 1
                illegal += turn.invalid is not None
        if not seats or LEAGUE not in episode.agents.values() or episode.status != "ok":
            continue
        league_games += 1
        me = seats[0]
        mine = episode.returns.get(me, 0.0)
        theirs = max(episode.returns.get(p, 0.0) for p, agent in episode.agents.items() if agent != POLICY)
        wins += mine > theirs
        draws += mine == theirs
        losses += mine < theirs
    rewards = [r for t in trajectories for r in t.turn_rewards]
    lengths = [t.num_turns for t in trajectories]
    return {
        "seatings": seating_counts(episodes),
        "task_success_rate": task_success_rate(episodes),
        "illegal_rate": illegal / policy_turns if policy_turns else 0.0,
        "league_win_rate": wins / league_games if league_games else None,
        "league_loss_rate": losses / league_games if league_games else None,
        "mean_turn_reward": float(np.mean(rewards)) if rewards else 0.0,
        "mean_return": float(np.mean([t.outcome for t in trajectories])) if trajectories else 0.0,
        "mean_turns": float(np.mean(lengths)) if lengths else 0.0,
        "trajectories": len(trajectories),
    }


__all__ = [
    "LEAGUE",
    "POLICY",
    "TEACHER",
    "CastPart",
    "EnvSeats",
    "StepAgents",
    "cast_parts",
    "check_remote_memory",
    "check_training_casts",
    "drop_stale",
    "game_default_parts",
    "is_policy",
    "league_seat_counts",
    "league_temperature",
    "play_branches",
    "play_step_games",
    "policy_memory",
    "rollout_metrics",
    "rollout_seed",
    "step_parts",
    "training_cast",
]
