"""Curricula for training rollouts (`rollout.curriculum`): what the policy plays changes with the step.

Three kinds, any of them together (docs/procgen.md, "Curricula"):

- **horizon** (ScalingInter-RL, AgentGym-RL; docs/references.md §2): an env option capping the
  interaction turns (`max_turns` by default) starts low and grows by `increase` every `every` RL
  steps, up to `max`. Short horizons first keep early training on what the policy can finish;
  longer ones later let it explore.
- **difficulty**: the same step schedule over any other env option (`depth`, `size`,
  `difficulty`), e.g. the LUMINA worlds' depth from 1 to 4.
- **tasks** (learning-progress sampling, as XLand's curriculum and prioritized level replay): each
  step plays `per_step` of the listed envs, drawn with probability proportional to their
  absolute learning progress `|fast EMA - slow EMA|` of the policy's success there (EMA rates
  `fast` and `slow`), mixed with `explore` of uniform draws; envs never played come first. Tasks
  whose success is changing are drawn more; solved and hopeless ones fade.

In a training config:

    [rollout.curriculum]
    horizon = { start = 4, every = 10, increase = 2, max = 12 }         # option = "max_turns"
    difficulty = { option = "depth", start = 1, every = 20, max = 4 }
    [rollout.curriculum.tasks]
    envs = ["lumina:list?size=4", "lumina:tree?size=2", "lumina:grid?size=4"]
    per_step = 2

The schedules apply to every training env, or to those in their own `envs` list. Evaluation is
never scheduled: it plays `eval.env_options` (the target horizon and difficulty) throughout, so
curves compare runs with and without a curriculum on the same test.

State: the schedules are functions of the step; the sampler's averages, visit counts and random
generator go into every checkpoint (`Curriculum.state`), so `--resume` continues the curriculum
at the same point. Each step's metrics record says what the step played (`curriculum`:
the scheduled option values, the tasks drawn, and every task's learning progress).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from palaestra.core.records import Episode
from palaestra.core.scorecards import SUCCESS_AT
from palaestra.train.rollouts import EnvSeats

RolloutSection = Any
"""`palaestra.train.config.RolloutSection` (config imports this module, so it is not imported here)."""
TrainConfig = Any
"""`palaestra.train.config.TrainConfig`, likewise."""

Number = int | float


class OptionSchedule(BaseModel):
    """A step schedule over one env option: `start`, plus `increase` every `every` RL steps, capped
    at `max` (steps count from 0: the value at step s is start + increase * (s // every))."""

    model_config = ConfigDict(extra="forbid")

    option: str = Field(min_length=1)
    start: Number
    every: int = Field(ge=1)
    increase: Number = 1
    max: Number | None = None
    envs: list[str] | None = None

    @model_validator(mode="after")
    def _check(self) -> OptionSchedule:
        if self.max is not None and (self.max - self.start) * self.increase < 0:
            raise ValueError(
                f"{self.option}: max {self.max} is never reached from {self.start} by {self.increase}"
            )
        return self

    def value(self, step: int) -> Number:
        value = self.start + self.increase * (step // self.every)
        if self.max is not None:
            value = min(value, self.max) if self.increase >= 0 else max(value, self.max)
        if all(isinstance(v, int) for v in (self.start, self.increase)):
            return int(value)
        return float(value)

    def applies_to(self, env_id: str) -> bool:
        return self.envs is None or env_id in self.envs


class HorizonSchedule(OptionSchedule):
    """The horizon schedule: an `OptionSchedule` whose option defaults to `max_turns`."""

    option: str = Field(default="max_turns", min_length=1)


class TaskSampling(BaseModel):
    """Learning-progress sampling over `envs` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    envs: list[str] = Field(min_length=2)
    per_step: int = Field(default=1, ge=1)
    fast: float = Field(default=0.5, gt=0, le=1)
    slow: float = Field(default=0.1, gt=0, le=1)
    explore: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> TaskSampling:
        if len(set(self.envs)) != len(self.envs):
            raise ValueError("tasks.envs lists an env twice")
        if self.per_step > len(self.envs):
            raise ValueError(f"tasks.per_step ({self.per_step}) is more than the {len(self.envs)} tasks")
        if self.slow >= self.fast:
            raise ValueError(f"tasks.slow ({self.slow}) must be below tasks.fast ({self.fast})")
        return self


class CurriculumSection(BaseModel):
    """`rollout.curriculum`: a horizon schedule, a difficulty schedule, learning-progress sampling."""

    model_config = ConfigDict(extra="forbid")

    horizon: HorizonSchedule | None = None
    difficulty: OptionSchedule | None = None
    tasks: TaskSampling | None = None

    @model_validator(mode="after")
    def _check(self) -> CurriculumSection:
        if self.horizon and self.difficulty and self.horizon.option == self.difficulty.option:
            raise ValueError(f"horizon and difficulty both schedule {self.horizon.option!r}; choose one")
        return self

    def schedules(self) -> list[OptionSchedule]:
        return [s for s in (self.horizon, self.difficulty) if s is not None]

    def check_envs(self, training: Sequence[str]) -> None:
        """ValueError (one line) for a scheduled or sampled env that is not a training env."""
        named = [
            *(self.tasks.envs if self.tasks else []),
            *(e for s in self.schedules() for e in s.envs or []),
        ]
        for env_id in named:
            if env_id not in training:
                raise ValueError(f"rollout.curriculum names {env_id!r}, which is not in rollout.envs")


def policy_success(episode: Episode, policy: str) -> float | None:
    """The share of the policy's seats in `episode` whose return reached success (None: no seat)."""
    seats = [player for player, agent in episode.agents.items() if agent == policy]
    if not seats or episode.status != "ok":
        return None
    return sum(episode.returns.get(p, 0.0) >= SUCCESS_AT for p in seats) / len(seats)


class ScheduledSeats(EnvSeats):
    """A step's env options: the configured ones with the curriculum's values over them. Seats are
    read from the configured env (a scheduled option must not change who plays)."""

    def __init__(self, base: EnvSeats, overrides: dict[str, dict[str, Number]]) -> None:
        super().__init__(base.env_options)
        self.base = base
        self.overrides = overrides

    def options(self, env_id: str) -> dict[str, Any]:
        return {**self.base.options(env_id), **self.overrides.get(env_id, {})}

    def ids(self, env_id: str) -> tuple[str, ...]:
        return self.base.ids(env_id)


@dataclass
class StepPlan:
    """What one RL step plays: its rollout section (the envs drawn), its env options, where each
    played env sits in `rollout.envs` (its seeds stay the env's own), and the metrics record."""

    rollout: RolloutSection
    envs: EnvSeats
    numbers: list[int]
    record: dict[str, Any] = field(default_factory=dict)

    def facts(
        self, league_snapshot: int, league_temperature: float, self_play_share: float
    ) -> dict[str, Any]:
        """The step's facts for its metrics record: the league's and self-play's, the curriculum's."""
        return {
            "league_snapshot": league_snapshot,
            "league_temperature": league_temperature,
            "self_play_share": self_play_share,
            **self.record,
        }

    def seeds(self, seed: Callable[[str, int, int], int], phase: str, step: int) -> Callable[[int], int]:
        """`seed(phase, step, env_number)` with the played env's number in the full env list."""
        return lambda n: seed(phase, step, self.numbers[n])


class Curriculum:
    """The running curriculum of one training run (`section` None: every step plays everything as
    configured). `envs` are the training env ids, `seed` seeds the task sampler."""

    def __init__(
        self, section: CurriculumSection | None, envs: Sequence[str], seed: int, policy: str
    ) -> None:
        empty = section is not None and not section.schedules() and section.tasks is None
        self.section = None if empty else section  # `[rollout.curriculum]` with nothing in it: none
        self.envs = list(envs)
        self.policy = policy
        self.rng = random.Random(seed * 7_919 + 17)
        tasks = section.tasks.envs if section and section.tasks else []
        self.fast: dict[str, float] = {}
        self.slow: dict[str, float] = {}
        self.visits: dict[str, int] = dict.fromkeys(tasks, 0)

    @classmethod
    def for_config(cls, config: TrainConfig, policy: str) -> Curriculum:
        """The curriculum of a training config (`rollout.curriculum`, seeded by `train.seed`)."""
        return cls(config.rollout.curriculum, config.rollout.envs, config.train.seed, policy)

    @property
    def active(self) -> bool:
        return self.section is not None

    def options(self, step: int, env_id: str) -> dict[str, Number]:
        """The scheduled option values of `env_id` at RL step `step`."""
        if self.section is None:
            return {}
        return {s.option: s.value(step) for s in self.section.schedules() if s.applies_to(env_id)}

    def progress(self, env_id: str) -> float:
        """Absolute learning progress: |fast EMA - slow EMA| of the policy's success."""
        return abs(self.fast.get(env_id, 0.0) - self.slow.get(env_id, 0.0))

    def draw_tasks(self) -> list[str]:
        """The sampled tasks of the next step (without repeats), unvisited ones first."""
        assert self.section is not None and self.section.tasks is not None
        sampling = self.section.tasks
        remaining = list(sampling.envs)
        chosen: list[str] = []
        while len(chosen) < sampling.per_step:
            unvisited = [task for task in remaining if self.visits.get(task, 0) == 0]
            if unvisited:
                pick = self.rng.choice(unvisited)
            else:
                scores = [self.progress(task) for task in remaining]
                total = sum(scores)
                uniform = 1.0 / len(remaining)
                weights = [
                    sampling.explore * uniform
                    + (1 - sampling.explore) * (s / total if total > 0 else uniform)
                    for s in scores
                ]
                pick = self.rng.choices(remaining, weights)[0]
            chosen.append(pick)
            remaining.remove(pick)
            self.visits[pick] = self.visits.get(pick, 0) + 1
        return [env_id for env_id in self.envs if env_id in chosen]  # in config order

    def step_envs(self, step: int) -> list[str]:
        """The training envs played at `step` (all of them unless tasks are sampled)."""
        if self.section is None or self.section.tasks is None:
            return list(self.envs)
        sampled = set(self.section.tasks.envs)
        drawn = set(self.draw_tasks())
        return [env_id for env_id in self.envs if env_id not in sampled or env_id in drawn]

    def observe(self, episodes: Sequence[Episode]) -> None:
        """Update the sampled tasks' success averages with a step's episodes."""
        if self.section is None or self.section.tasks is None:
            return
        sampling = self.section.tasks
        by_env: dict[str, list[float]] = {}
        for episode in episodes:
            success = policy_success(episode, self.policy)
            if success is not None and episode.env_id in self.visits:
                by_env.setdefault(episode.env_id, []).append(success)
        for env_id, values in by_env.items():
            mean = sum(values) / len(values)
            if env_id not in self.fast:
                self.fast[env_id] = self.slow[env_id] = mean
            else:
                self.fast[env_id] += sampling.fast * (mean - self.fast[env_id])
                self.slow[env_id] += sampling.slow * (mean - self.slow[env_id])

    def plan(self, rollout: RolloutSection, envs: EnvSeats, step: int) -> StepPlan:
        """What RL step `step` plays (everything as configured when there is no curriculum)."""
        if self.section is None:
            return StepPlan(rollout, envs, list(range(len(rollout.envs))))
        played = self.step_envs(step)
        overrides = {env_id: self.options(step, env_id) for env_id in played}
        return StepPlan(
            rollout.model_copy(update={"envs": played}),
            ScheduledSeats(envs, overrides),
            [rollout.envs.index(env_id) for env_id in played],
            self.record(step, played),
        )

    def record(self, step: int, played: Sequence[str]) -> dict[str, Any]:
        """What step `step` played, for its metrics record (`curriculum` and flat scalars)."""
        if self.section is None:
            return {}
        scheduled: dict[str, Number] = {}
        for env_id in played:
            scheduled.update(self.options(step, env_id))
        found: dict[str, Any] = {"options": scheduled, "envs": list(played)}
        if self.section.tasks is not None:
            found["progress"] = {task: round(self.progress(task), 6) for task in self.section.tasks.envs}
            found["success_ema"] = {task: round(self.fast[task], 6) for task in self.fast}
        return {"curriculum": found, **{f"curriculum_{name}": value for name, value in scheduled.items()}}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to continue at the same point."""
        return {
            "fast": dict(self.fast),
            "slow": dict(self.slow),
            "visits": dict(self.visits),
            "rng": self.rng.getstate(),
        }

    def load(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.fast = dict(state["fast"])
        self.slow = dict(state["slow"])
        self.visits = {**self.visits, **state["visits"]}
        self.rng.setstate(state["rng"])


__all__ = [
    "Curriculum",
    "CurriculumSection",
    "HorizonSchedule",
    "OptionSchedule",
    "ScheduledSeats",
    "StepPlan",
    "TaskSampling",
    "policy_success",
]
