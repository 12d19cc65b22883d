"""The trainer loop behind `palaestra train`: self-play multi-turn RL with turn-level credit.

One RL step, top to bottom (`Trainer._rl_step`):

1. **Rollouts** (`train.collection`) through the ordinary episode runner on the local engine
   that holds the live weights, seated by each env's cast (`rollout.casts`, docs/casts.md): for
   games by default self-play games (the policy in every seat; each seat's side is its own
   trajectory) and league games (a frozen snapshot of the policy in the other seats); for
   service envs the policy serves and the scripted customer asks; or any seats against league
   snapshots and fixed agents. Only the policy's seats train. With
   `rollout.branch_states`, then branch continuations from positions of those games
   (`train.branching`): only their chosen turn trains, with a group-relative advantage instead
   of the estimator's.
2. **Turn rewards** from the records (`rewards.turn_rewards`: the env's reward, +valid-action
   bonus, draw value, the env's MARS penalty), one per turn of each policy trajectory.
3. **Advantages** per turn by the configured estimator (`mars`: turn returns normalized per game
   and per seat), spread onto every sampled token of the turn. With a critic (`train.critic`:
   `algorithm.value_coef > 0`) a value head on the policy's trunk first estimates each turn's
   value, which `mars` with `gae_lambda` uses as its baseline; the head trains in the update.
4. **PPO update** (`train.update`): log-probs recomputed under the training model
   (`forward.token_logprobs`), clipped surrogate with dual clip, optional k3 KL to the start
   policy and entropy bonus; gradient clipping; one optimizer step per minibatch. The rollout's
   log-probs are compared with the recomputed ones (importance-ratio check) and logged.
5. **Bookkeeping** (`train.run_folder`, `train.checkpoint`): metrics to `metrics.jsonl`, periodic
   evaluation against fixed opponents on `eval.envs`, held-out ones included (`eval.jsonl`,
   `train.evaluation`), atomic checkpoints with optimizer and RNG state (`--resume` continues).
   With `train.report_to`, TensorBoard and W&B get the same records (`train.tracking`).

An optional cold start (`[sft]`, `train.sft`) first imitates random-legal play through the same
token path, to teach the answer format and legality (not strategy). The models, engines and
optimizer are built by `train.build`.

Scale-out (docs/scaling.md): `rollout.executor = "ray..."` plays the rollouts on Ray workers
(`train.ray_rollouts`) that hold their own copies of the policy and league engines; the new
weights are broadcast after every update (`weight_version` in each episode; with
`rollout.async_rollouts` the next step's rollouts run during the update, and episodes older than
`rollout.max_staleness` updates are dropped and counted). Under `accelerate launch` every process
plays its own rollouts and the update's gradients are averaged across processes
(`train.distributed`); only the main process writes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from palaestra.core.records import Episode
from palaestra.train.branching import BranchGroup, branch_batch
from palaestra.train.build import (
    check_league_seat_weights,
    frozen_copy,
    initial_model_folder,
    local_engines,
    make_optimizer,
    mark_trained_with,
    prompt_template,
    ray_rollouts,
    wrap_lora,
)
from palaestra.train.checkpoint import load_state, rng_state, save_checkpoint, set_rng_state
from palaestra.train.collection import (
    LEAGUE,
    POLICY,
    TEACHER,
    EnvSeats,
    StepAgents,
    check_remote_memory,
    check_training_casts,
    drop_stale,
    is_policy,
    league_seat_counts,
    league_temperature,
    play_branches,
    play_step_games,
    policy_memory,
    rollout_metrics,
    rollout_seed,
)
from palaestra.train.config import TrainConfig
from palaestra.train.critic import Critic
from palaestra.train.curriculum import Curriculum
from palaestra.train.distributed import Distributed
from palaestra.train.evaluation import EvalCell, evaluate_envs
from palaestra.train.rewards import Trajectory, trajectories_from_episodes
from palaestra.train.rollouts import League, policy_factory
from palaestra.train.run_folder import (
    EVAL_FILE,
    METRICS_FILE,
    TrainError,
    append_jsonl,
    export_final,
    prepare_run_folder,
    stored_evaluations,
    truncate_records,
)
from palaestra.train.sft import imitate, imitation_learner, imitation_rows
from palaestra.train.tracking import Tracker
from palaestra.train.update import (
    Learner,
    UpdateBatch,
    compute_old_logprobs,
    ppo_update,
    set_learning_rate,
)

StepRollouts = tuple[list[Episode], list[BranchGroup], dict[str, Any]]
"""A step's episodes, its branch groups, and facts about the rollout for the metrics."""


@dataclass
class TrainResult:
    """What a training run leaves: where, how far, and the evaluations by stage."""

    out_dir: Path
    steps_done: int
    stopped_early: bool
    evaluations: dict[str, list[EvalCell]] = field(default_factory=dict)
    final_model: Path | None = None
    wall_s: float = 0.0


class Trainer:
    """Runs one training configuration into `config.train.out`.

    `on_event(kind, payload)` receives progress (`phase`, `step`, `sft`, `eval`) for a UI; the
    trainer itself prints nothing.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        start_over: bool = False,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.out = Path(config.train.out)
        self.resume, self.start_over = resume, start_over
        self._checkpointed_step: int | None = None
        self.on_event = on_event or (lambda kind, payload: None)
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.envs = EnvSeats(config.rollout.env_options)
        self.eval_envs = EnvSeats(config.eval_env_options)
        self.step = self.env_steps = 0
        self.rng = random.Random(config.train.seed)
        self.dist = Distributed.from_environment(cpu=config.model.device == "cpu")
        self.remote: Any = None
        """`RayRollouts` when rollouts run on Ray workers."""
        self._prefetched: asyncio.Task[StepRollouts] | None = None
        self.stale_dropped = 0
        self.curriculum = Curriculum.for_config(config, POLICY)

    # ----- set-up -------------------------------------------------------------------------------
    def _prepare_folder(self) -> Path | None:
        """Check the run folder; returns the checkpoint to resume from, if any."""
        return prepare_run_folder(
            self.out,
            resume=self.resume,
            start_over=self.start_over,
            is_main=self.dist.is_main,
            config_json=self.config.model_dump_json(indent=2),
        )

    def _initial_model_folder(self) -> Path:
        return initial_model_folder(self.config.model, self.out, is_main=self.dist.is_main)

    def _build(self, folder: Path) -> None:
        config, algorithm = self.config, self.config.algorithm
        self.engine, self.league_engine = local_engines(config, folder, self.dist.device(config.model.device))
        self.policy = self.engine.model
        self.template = prompt_template(self.engine, config.model.template)
        mark_trained_with(self.policy, config.model.template, config.rollout.env_options)
        if config.model.lora:
            self.policy = wrap_lora(self.policy, config.model)
            self.engine.model = self.policy
        self.reference = frozen_copy(self.policy) if algorithm.kl_coef > 0 else None
        self.critic = Critic.for_policy(self.policy, algorithm)
        self.value_head = self.critic.value_head
        optimizer = make_optimizer(self.policy, self.value_head, algorithm)
        # Alone, `scorer` is the policy itself; under accelerate, the DDP/FSDP-wrapped scoring module.
        self.scorer, self.optimizer = self.dist.prepare(self.policy, optimizer, self.value_head)
        self.league = League(config.rollout.league_size, config.rollout.first_snapshot_share)
        check_league_seat_weights(config.rollout, self.envs.players)
        check_training_casts(config.rollout, self.envs)
        if config.rollout.executor != "local":
            check_remote_memory(config, self.template.name)
            self.remote = ray_rollouts(config, folder)

    def _trained_parameters(self) -> list[torch.nn.Parameter]:
        parameters = [p for p in self.policy.parameters() if p.requires_grad]
        if self.value_head is not None:
            parameters += list(self.value_head.parameters())
        return parameters

    # ----- the run ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        return asyncio.run(self.arun())

    async def arun(self) -> TrainResult:
        config = self.config
        self.on_event = self.tracker = Tracker(config, self.out, self.on_event, is_main=self.dist.is_main)
        with self.dist.main_first():  # the main process checks and writes the folder first
            checkpoint = self._prepare_folder()
            folder = checkpoint if checkpoint is not None else self._initial_model_folder()
        random.seed(config.train.seed)
        np.random.seed(config.train.seed % (2**32))
        torch.manual_seed(config.train.seed)
        self._build(folder)
        result = TrainResult(out_dir=self.out, steps_done=0, stopped_early=False)
        evaluations = result.evaluations
        try:
            if checkpoint is not None:
                self._restore(load_state(checkpoint))
                self.on_event("phase", {"phase": "resume", "step": self.step, "checkpoint": str(checkpoint)})
            else:
                if config.sft.steps:
                    self.on_event("phase", {"phase": "sft", "steps": config.sft.steps})
                    await self._sft()
                evaluations["start"] = await self._evaluate("start", config.eval.final_episodes)
                self.league.add(0, self.policy.state_dict())
                self._checkpoint()
            self.on_event("phase", {"phase": "rl", "steps": config.train.steps, "from": self.step})
            while self.step < config.train.steps:
                if self._out_of_time():
                    result.stopped_early = True
                    break
                await self._rl_step()
                self.step += 1
                if self.step % config.rollout.snapshot_every == 0:
                    self.league.add(self.step, self.policy.state_dict())
                if (
                    config.eval.every
                    and self.step % config.eval.every == 0
                    and self.step < config.train.steps
                ):
                    await self._evaluate(f"step {self.step}", config.eval.episodes)
                if self.step % config.train.checkpoint_every == 0:
                    self._checkpoint()
            self._checkpoint()
            evaluations["final"] = await self._evaluate("final", config.eval.final_episodes)
            result.final_model = (
                export_final(self.out, self.policy, self.engine.tokenizer) if self.dist.is_main else None
            )
        finally:
            self.tracker.close()
            await self._close()
        result.steps_done = self.step
        result.wall_s = time.perf_counter() - self.started
        # Only the main process evaluates and writes eval.jsonl (it may still be writing it).
        stored = stored_evaluations(self.out / EVAL_FILE) if self.dist.is_main else {}
        for stage in ("start", "final"):
            if stage not in evaluations and stage in stored:
                evaluations[stage] = stored[stage]
        return result

    async def _close(self) -> None:
        if self._prefetched is not None:
            self._prefetched.cancel()
            await asyncio.gather(self._prefetched, return_exceptions=True)
        if self.remote is not None:
            self.remote.close()
        await self.engine.close()
        await self.league_engine.close()

    def _out_of_time(self) -> bool:
        budget = self.config.train.time_budget_s
        return budget is not None and time.perf_counter() - self.started > budget

    def _clock(self) -> dict[str, float]:
        """Wall seconds since the run started, and this process's CPU seconds: on a loaded machine,
        what the run would take alone."""
        return {"time_s": time.perf_counter() - self.started, "cpu_s": time.process_time() - self.cpu_started}

    def _record(self, kind: str, record: dict[str, Any]) -> None:
        """A step's record into `metrics.jsonl` (main process) and to `on_event`."""
        if self.dist.is_main:
            append_jsonl(self.out / METRICS_FILE, record)
        self.on_event(kind, record)

    # ----- cold start ---------------------------------------------------------------------------
    async def _sft(self) -> None:
        started = time.perf_counter()
        rows = await imitation_rows(
            self.config, self.engine, self.template, self.envs, lambda n: self._seed("sft", 0, n)
        )
        dataset_s = time.perf_counter() - started
        learner = imitation_learner(
            self.dist, self.scorer, self.policy, self.config.sft, self.config.algorithm.grad_clip
        )
        self.policy.train()
        try:
            imitate(
                rows,
                learner,
                self.config.sft,
                with_values=self.value_head is not None,
                rng=self.rng,
                emit=lambda record: self._record("sft", {**record, **self._clock()}),
                dataset_s=dataset_s,
            )
        finally:
            self.policy.eval()
            self.engine.drop_caches()

    # ----- one RL step --------------------------------------------------------------------------
    def _seed(self, phase: str, step: int, env_number: int) -> int:
        return rollout_seed(self.config.train.seed, self.dist.rank, phase, step, env_number)

    def _memory(self, env_id: str) -> str:
        return policy_memory(self.config.model.memory, env_id)

    def _league_temperature(self, snapshot_step: int) -> float:
        """The sampling temperature of the league opponent taken at `snapshot_step`."""
        return league_temperature(self.config.rollout, self.league, snapshot_step)

    async def _rollouts(
        self, step: int | None = None, draw: tuple[int, dict[str, Any]] | None = None
    ) -> StepRollouts:
        """The episodes of RL step `step` (default: the current one), with league snapshot `draw`
        (default: drawn now) and what the curriculum schedules for the step; the branch points
        drawn from them with their continuations; facts about the rollout for the metrics."""
        step = self.step if step is None else step
        plan = self.curriculum.plan(self.config.rollout, self.envs, step)
        snapshot_step, weights = self.league.draw(self.rng) if draw is None else draw
        temperature = self._league_temperature(snapshot_step)
        agents = StepAgents(
            plan.rollout, self.template.name, self.engine, self.league_engine, self.remote, temperature
        )
        # On Ray workers, the policy plays with the weights after `self.step` updates.
        agents.load_league(snapshot_step, weights, self.policy, version=self.step)
        self_play_share = plan.rollout.self_play_share(step)
        episodes = await play_step_games(
            agents, plan.envs, self_play_share, plan.seeds(self._seed, "rl", step), self._memory
        )
        info = plan.facts(snapshot_step, temperature, self_play_share)
        branches: list[BranchGroup] = []
        if plan.rollout.branch_states:
            started = time.perf_counter()
            branches = await play_branches(agents, episodes, plan.seeds(self._seed, "branch", step))
            info["branch_s"] = time.perf_counter() - started
        return episodes, branches, info

    async def _step_rollouts(self) -> StepRollouts:
        """This step's rollouts (played during the previous update when they overlap it), and, when
        they overlap, the next step's started."""
        if self._prefetched is not None:
            rollouts = await self._prefetched
            self._prefetched = None
        else:
            rollouts = await self._rollouts()
        if self._overlapping() and self.step + 1 < self.config.train.steps:
            # The next step's rollouts play on the Ray workers during this update. The league
            # draw happens here, not in the task: the update (in a thread) shuffles with self.rng.
            draw = self.league.draw(self.rng)
            self._prefetched = asyncio.create_task(self._rollouts(self.step + 1, draw))
        return rollouts

    def _overlapping(self) -> bool:
        return self.remote is not None and self.config.rollout.async_rollouts

    async def _rl_step(self) -> None:
        started = time.perf_counter()
        episodes, branches, rollout_info = await self._step_rollouts()
        self.curriculum.observe(episodes)
        overlap = self._overlapping()
        rollout_s = time.perf_counter() - started
        episodes, staleness = self._drop_stale(episodes)
        self.env_steps += sum(episode.num_steps for episode in episodes)
        self.env_steps += sum(episode.num_steps for _, group in branches for episode in group)
        batch = trajectories_from_episodes(episodes, players=is_policy, config=self.config.rewards)
        branch_trajectories, branch_advantages, branch_stats = self._branch_batch(branches)
        update_started = time.perf_counter()
        trajectories, advantages, value_targets, critic_stats = self.critic.advantages(
            self.policy,
            batch.trajectories,
            branch_trajectories,
            branch_advantages,
            self.config.algorithm,
            started=update_started,
        )
        if overlap:
            # In a thread, so the event loop keeps streaming the next step's episodes meanwhile.
            update_stats = await asyncio.to_thread(self._update, trajectories, advantages, value_targets)
        else:
            update_stats = self._update(trajectories, advantages, value_targets)
        update_stats.update(critic_stats)
        self.engine.drop_caches()
        if self.remote is not None:
            # Broadcast after each update; with overlapping rollouts the workers swap the new
            # weights in as their running episodes end, without the trainer waiting for it.
            self.remote.sync_policy(self.policy.state_dict(), version=self.step + 1, wait=not overlap)
        record = {
            "phase": "rl",
            "step": self.step + 1,
            **self._clock(),
            "rollout_s": rollout_s,
            "update_s": time.perf_counter() - update_started,
            "episodes": len(episodes),
            "env_steps": self.env_steps,
            "skipped_episodes": dict(batch.skipped_episodes),
            "lr": self.optimizer.param_groups[0]["lr"],
            **rollout_info,
            **staleness,
            **rollout_metrics(episodes, batch.trajectories),
            **branch_stats,
            **update_stats,
        }
        self._record("step", record)

    def _branch_batch(
        self, branches: Sequence[BranchGroup]
    ) -> tuple[list[Trajectory], list[list[float]], dict[str, Any]]:
        """The branching seat's trajectory of every continuation (only the chosen turn trains) and
        its per-turn advantages: the branch advantage on the chosen turn, 0 elsewhere."""
        return branch_batch(
            branches,
            self.config.rewards,
            gamma=float(self.config.algorithm.estimator_options.get("gamma", 1.0)),
            weight=self.config.rollout.branch_weight,
            policy_weighted=self.config.rollout.branch_weighting == "policy",
        )

    def _drop_stale(self, episodes: list[Episode]) -> tuple[list[Episode], dict[str, Any]]:
        """Keep the episodes whose policy weights lag at most `rollout.max_staleness` updates behind
        the weights about to be updated (version `self.step`); count the rest."""
        if self.remote is None:
            return episodes, {}
        kept, stats = drop_stale(episodes, self.step, self.config.rollout.max_staleness, self.stale_dropped)
        self.stale_dropped = stats["stale_dropped_total"]
        return kept, stats

    def _update(
        self,
        trajectories: Sequence[Trajectory],
        advantages: Sequence[Sequence[float]],
        value_targets: Sequence[Sequence[float]] | None = None,
    ) -> dict[str, Any]:
        """The PPO update on the step's trajectories (`train.update`)."""
        algorithm = self.config.algorithm
        batch = UpdateBatch.from_trajectories(trajectories, advantages, value_targets)
        set_learning_rate(self.optimizer, algorithm, self.step, self.config.train.steps)
        # Several processes update together or not at all (each backward pass meets the others').
        if not (self.dist.sum(len(batch.rows)) if self.dist.active else batch.rows):
            return {"rows": 0}
        # Overlapping rollouts may come from the previous weights: their own sampling log-probs
        # are then PPO's old ones, so the ratio corrects for the lag even in a single epoch.
        old = compute_old_logprobs(self.policy, batch, algorithm, behind=self._overlapping())
        learner = Learner(
            self.dist,
            self.scorer,
            self.optimizer,
            self._trained_parameters(),
            algorithm.grad_clip,
            self.reference,
        )
        self.policy.train()
        try:
            return ppo_update(learner, batch, algorithm, rng=self.rng, old_logprobs=old)
        finally:
            self.policy.eval()

    # ----- evaluation, checkpoints --------------------------------------------------------------
    async def _evaluate(self, stage: str, episodes: int) -> list[EvalCell]:
        if not self.dist.is_main:
            return []  # the processes hold the same weights: one evaluation is enough

        def policy(env_id: str, prefix: str) -> Any:
            return policy_factory(
                self.engine,
                temperature=self.config.eval.temperature,
                session_prefix=prefix,
                template=self.template.name,
                memory=self._memory(env_id),
            )

        cells = await evaluate_envs(self.config, self.eval_envs, policy, episodes=episodes)
        for cell in cells:
            record = {"stage": stage, "step": self.step, **self._clock(), **cell.to_dict()}
            append_jsonl(self.out / EVAL_FILE, {**record, "held_out": self.config.held_out(cell.env_id)})
        self.on_event("eval", {"stage": stage, "step": self.step, "cells": cells})
        return cells

    def _checkpoint(self) -> None:
        if not self.dist.is_main or self._checkpointed_step == self.step:  # the last step: once
            return
        state = {
            "step": self.step,
            "env_steps": self.env_steps,
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "trainer_rng": self.rng.getstate(),
            "league": self.league.state(),
            **self.critic.state(),
            "elapsed_s": time.perf_counter() - self.started,
            "stale_dropped": self.stale_dropped,
            "curriculum": self.curriculum.state(),
        }
        keep = self.config.train.keep_checkpoints
        save_checkpoint(self.out, self.step, self.policy, self.engine.tokenizer, state, keep)
        self._checkpointed_step = self.step

    def _restore(self, state: dict[str, Any]) -> None:
        self.critic.check_resumable(state)
        self.step = int(state["step"])
        self._checkpointed_step = self.step
        self.env_steps = int(state["env_steps"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.rng.setstate(state["trainer_rng"])
        self.league.load(state["league"])
        self.critic.load(state)
        self.stale_dropped = int(state.get("stale_dropped", 0))
        self.curriculum.load(state.get("curriculum"))
        # The time budget counts the whole run, killed part included.
        self.started -= float(state.get("elapsed_s", 0.0))
        if self.dist.is_main:
            truncate_records(self.out, self.step)


__all__ = [
    "EVAL_FILE",
    "LEAGUE",
    "METRICS_FILE",
    "POLICY",
    "TEACHER",
    "TrainError",
    "TrainResult",
    "Trainer",
    "league_seat_counts",
]
