"""The trainer loop behind `palaestra train`: self-play multi-turn RL with turn-level credit.

One RL step, top to bottom (`Trainer._rl_step`):

1. **Rollouts** through the ordinary episode runner on the local engine that holds the live
   weights: self-play games (the policy in every seat; each seat's side is its own trajectory)
   and league games (a frozen snapshot of the policy in one seat). With `rollout.branch_states`,
   then branch continuations from positions of those games (`train.branching`): only their
   chosen turn trains, with a group-relative advantage instead of the estimator's.
2. **Turn rewards** from the records (`rewards.turn_rewards`: the env's reward, +valid-action
   bonus, draw value, the env's MARS penalty), one per turn of each policy trajectory.
3. **Advantages** per turn by the configured estimator (`mars`: turn returns normalized per game
   and per seat), spread onto every sampled token of the turn. With a critic
   (`algorithm.value_coef > 0`) a value head on the policy's trunk first estimates each turn's
   value, which `mars` with `gae_lambda` uses as its baseline; the head trains in the update.
4. **PPO update**: log-probs recomputed under the training model (`forward.token_logprobs`),
   clipped surrogate with dual clip, optional k3 KL to the start policy and entropy bonus;
   gradient clipping; one optimizer step per minibatch. The rollout's log-probs are compared with
   the recomputed ones (importance-ratio check) and logged.
5. **Bookkeeping**: metrics to `metrics.jsonl`, periodic evaluation against fixed opponents
   (`eval.jsonl`), atomic checkpoints with optimizer and RNG state (`--resume` continues).

An optional cold start (`[sft]`) first imitates random-legal play through the same token path, to
teach the answer format and legality (not strategy).

Scale-out (docs/scaling.md): `rollout.executor = "ray..."` plays the rollouts on Ray workers that
hold their own copies of the policy and league engines; the new weights are broadcast after every
update (`weight_version` in each episode; with `rollout.async_rollouts` the next step's rollouts
run during the update, and episodes older than `rollout.max_staleness` updates are dropped and
counted). Under `accelerate launch` every process plays its own rollouts and the update's
gradients are averaged across processes (`train.distributed`); only the main process writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from palaestra.core.records import Episode
from palaestra.core.registry import make
from palaestra.rollout.runner import episode_id
from palaestra.train.advantages import compute_advantages, lambda_returns
from palaestra.train.branching import (
    BranchGroup,
    BranchPoint,
    branch_advantages,
    branch_factories,
    branch_points,
    branch_returns,
    continuation_trajectories,
)
from palaestra.train.checkpoint import (
    latest_checkpoint,
    load_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from palaestra.train.config import TrainConfig
from palaestra.train.distributed import Distributed, dummy_row
from palaestra.train.evaluation import EvalCell, evaluate, opponents_for
from palaestra.train.forward import TrainBatch, TrainRow, minibatch_indices, token_logprobs
from palaestra.train.losses import importance_ratio_stats, ppo_objective
from palaestra.train.rewards import Trajectory, trajectories_from_episodes
from palaestra.train.rollouts import League, Seating, collect, policy_factory, teacher_factory
from palaestra.train.value_table import ValueTable

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
POLICY, LEAGUE, TEACHER = "policy", "league", "teacher"


class TrainError(ValueError):
    """A user-facing training problem (bad run folder, missing model); one line."""


@dataclass
class TrainResult:
    """What a training run leaves: where, how far, and the evaluations by stage."""

    out_dir: Path
    steps_done: int
    stopped_early: bool
    evaluations: dict[str, list[EvalCell]] = field(default_factory=dict)
    final_model: Path | None = None
    wall_s: float = 0.0


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return max(0.05, 1.0 - progress)
    return max(0.05, 0.5 * (1.0 + math.cos(math.pi * progress)))


class Trainer:
    """Runs one training configuration into `config.train.out`.

    `on_event(kind, payload)` receives progress (`phase`, `step`, `eval`) for a UI; the trainer
    itself prints nothing.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.out = Path(config.train.out)
        self.resume = resume
        self.on_event = on_event or (lambda kind, payload: None)
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self._seats: dict[str, int] = {}
        self.step = 0
        self.env_steps = 0
        self.rng = random.Random(config.train.seed)
        self.dist = Distributed.from_environment(cpu=config.model.device == "cpu")
        self.remote: Any = None
        """`RayRollouts` when rollouts run on Ray workers."""
        self._prefetched: asyncio.Task[tuple[list[Episode], list[BranchGroup], dict[str, Any]]] | None = None
        self.stale_dropped = 0

    # ----- set-up -------------------------------------------------------------------------------
    def _prepare_folder(self) -> Path | None:
        """Check the run folder; returns the checkpoint to resume from, if any."""
        checkpoint = latest_checkpoint(self.out) if self.out.exists() else None
        has_run = (self.out / METRICS_FILE).exists() or checkpoint is not None
        if has_run and not self.resume:
            raise TrainError(
                f"{self.out} already holds a training run; pass --resume to continue it "
                "or set train.out to another folder"
            )
        if not self.dist.is_main:
            return checkpoint
        if self.resume and checkpoint is None and has_run:
            # Killed before its first checkpoint: start over cleanly.
            for name in (METRICS_FILE, EVAL_FILE):
                (self.out / name).unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(self.config.model_dump_json(indent=2))
        return checkpoint

    def _initial_model_folder(self) -> Path:
        model = self.config.model
        if model.init == "tiny" and not self.dist.is_main:
            return self.out / "model_init"  # the main process wrote it (`Distributed.main_first`)
        if model.init == "tiny":
            from palaestra.models.tiny import init_tiny_model

            return init_tiny_model(
                self.out / "model_init",
                seed=model.seed,
                hidden_size=model.hidden_size,
                num_hidden_layers=model.num_hidden_layers,
                num_attention_heads=model.num_attention_heads,
                intermediate_size=model.intermediate_size,
                overwrite=True,
            )
        folder = Path(model.init).expanduser()
        if not (folder / "config.json").is_file():
            raise TrainError(f"model.init {model.init!r} is neither 'tiny' nor a Hugging Face model folder")
        return folder

    def _build(self, folder: Path) -> None:
        from transformers.utils import logging as transformers_logging

        from palaestra.agents.llm import TEMPLATES, template_for_model
        from palaestra.models.local import LocalEngine

        transformers_logging.disable_progress_bar()  # checkpoints are written often; keep the output clean
        threads = self.config.train.threads or None
        device = self.dist.device(self.config.model.device)
        batch = self.config.rollout.engine_batch_size
        self.engine = LocalEngine(
            folder, device=device, max_batch_size=batch, threads=threads, seed=self.config.train.seed
        )
        self.league_engine = LocalEngine(
            folder, device=device, max_batch_size=batch, seed=self.config.train.seed + 1
        )
        self.policy = self.engine.model
        chosen = self.config.model.template
        self.template = template_for_model(self.engine) if chosen == "auto" else TEMPLATES[chosen]
        # Checkpoints and the final model say which template and env options they were trained
        # with (`trained_env_options` reads the latter back).
        marker = getattr(self.policy.config, "palaestra", None)
        self.policy.config.palaestra = {
            **(marker if isinstance(marker, dict) else {}),
            **({} if chosen == "auto" else {"prompt_template": chosen}),
            "env_options": self.config.rollout.env_options,
        }
        if self.config.model.lora:
            self._wrap_lora()
        self.reference = None
        if self.config.algorithm.kl_coef > 0:
            import copy

            self.reference = copy.deepcopy(self.policy).eval()
            for parameter in self.reference.parameters():
                parameter.requires_grad_(False)
        self.value_head: torch.nn.Linear | None = None
        if self.config.algorithm.value_coef > 0:
            # It reads the hidden state the LM head reads; zero at first, so the first step's
            # baseline is 0 and nothing but the head's own loss moves it.
            width = int(self.policy.get_output_embeddings().weight.shape[1])
            self.value_head = torch.nn.Linear(width, 1).to(self.policy.get_output_embeddings().weight.device)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)
        algorithm = self.config.algorithm
        self.value_table = (
            ValueTable(rate=algorithm.value_table_rate, prior=algorithm.value_table_prior)
            if algorithm.value_table
            else None
        )
        groups: list[dict[str, Any]] = [
            {"params": [p for p in self.policy.parameters() if p.requires_grad], "base_lr": algorithm.lr}
        ]
        if self.value_head is not None:
            value_lr = algorithm.lr if algorithm.value_lr is None else algorithm.value_lr
            groups.append({"params": list(self.value_head.parameters()), "lr": value_lr, "base_lr": value_lr})
        self.optimizer = torch.optim.AdamW(groups, lr=algorithm.lr, weight_decay=algorithm.weight_decay)
        # Alone, `scorer` is the policy itself; under accelerate, the DDP/FSDP-wrapped scoring module.
        self.scorer, self.optimizer = self.dist.prepare(self.policy, self.optimizer, self.value_head)
        self.league = League(self.config.rollout.league_size, self.config.rollout.first_snapshot_share)
        for env_id, weights in self.config.rollout.league_seat_weights.items():
            if len(weights) != (seats := self._num_players(env_id)):
                raise TrainError(
                    f"rollout.league_seat_weights[{env_id!r}] has {len(weights)} weights; "
                    f"{env_id} has {seats} seats"
                )
        if self.config.rollout.executor != "local":
            from palaestra.rollout.ray_training import RayRollouts

            options: dict[str, Any] = {"max_batch_size": batch, "seed": self.config.train.seed + 1}
            if self.config.rollout.worker_engine == "hf":
                options["device"] = self.config.model.device
            self.remote = RayRollouts(
                self.config.rollout.executor, folder, backend=self.config.rollout.worker_engine, **options
            )

    def _trained_parameters(self) -> list[torch.nn.Parameter]:
        parameters = [p for p in self.policy.parameters() if p.requires_grad]
        if self.value_head is not None:
            parameters += list(self.value_head.parameters())
        return parameters

    def _wrap_lora(self) -> None:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise TrainError("model.lora needs peft: pip install peft") from exc
        lora = LoraConfig(
            r=self.config.model.lora_rank,
            lora_alpha=self.config.model.lora_alpha,
            target_modules="all-linear",
            lora_dropout=0.0,
        )
        self.policy = get_peft_model(self.policy, lora)
        self.engine.model = self.policy

    # ----- the run ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        return asyncio.run(self.arun())

    async def arun(self) -> TrainResult:
        config = self.config
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
            result.final_model = self._export_final()
        finally:
            if self._prefetched is not None:
                self._prefetched.cancel()
                await asyncio.gather(self._prefetched, return_exceptions=True)
            if self.remote is not None:
                self.remote.close()
            await self.engine.close()
            await self.league_engine.close()
        result.steps_done = self.step
        result.wall_s = time.perf_counter() - self.started
        # Only the main process evaluates and writes eval.jsonl (it may still be writing it).
        stored = _stored_evaluations(self.out / EVAL_FILE) if self.dist.is_main else {}
        for stage in ("start", "final"):
            if stage not in evaluations and stage in stored:
                evaluations[stage] = stored[stage]
        return result

    def _out_of_time(self) -> bool:
        budget = self.config.train.time_budget_s
        return budget is not None and time.perf_counter() - self.started > budget

    # ----- cold start ---------------------------------------------------------------------------
    async def _sft(self) -> None:
        sft = self.config.sft
        started = time.perf_counter()
        episodes: list[Episode] = []
        for env_number, env_id in enumerate(self.config.rollout.envs):
            players = self._num_players(env_id)
            teachers = {
                f"{TEACHER}{seat}": teacher_factory(
                    sft.agents[seat % len(sft.agents)], self.engine, self.template
                )
                for seat in range(players)
            }
            seating = Seating(labels=tuple(teachers), factories=teachers)
            episodes += await collect(
                env_id,
                self._env_options(env_id),
                seating,
                episodes=sft.episodes,
                seed=self._seed("sft", 0, env_number),
            )
        trajectories = trajectories_from_episodes(episodes, config=self.config.rewards).trajectories
        rows = [
            TrainRow(tuple(r.input_ids), tuple(r.loss_mask)) for t in trajectories for r in t.token_rows()
        ]
        if not rows:
            raise TrainError("the cold start produced no training rows; check sft.agents")
        dataset_s = time.perf_counter() - started
        optimizer = self.dist.prepare_optimizer(
            torch.optim.AdamW([p for p in self.policy.parameters() if p.requires_grad], lr=sft.lr)
        )
        order: list[int] = []
        self.policy.train()
        try:
            for index in range(sft.steps):
                step_started = time.perf_counter()
                if len(order) < sft.batch_rows:
                    fresh = list(range(len(rows)))
                    self.rng.shuffle(fresh)
                    order += fresh
                chunk, order = order[: sft.batch_rows], order[sft.batch_rows :]
                # The critic's head (if any) takes part at weight 0: under DDP every parameter must
                # meet the gradient all-reduce in each backward pass.
                scored = self.dist.score(
                    self.scorer,
                    TrainBatch.from_rows([rows[i] for i in chunk]),
                    with_values=self.value_head is not None,
                )
                normalizer = self.dist.normalizer(scored.logprobs.numel())
                if normalizer is None:
                    loss = -scored.logprobs.mean()
                else:  # several processes: their losses add up to the mean over all their tokens
                    loss = -scored.logprobs.sum() / normalizer
                if scored.values is not None:
                    loss = loss + scored.values.sum() * 0.0
                optimizer.zero_grad(set_to_none=True)
                self.dist.backward(loss)
                self.dist.clip_grad_norm_(self.policy.parameters(), self.config.algorithm.grad_clip)
                optimizer.step()
                record = {
                    "phase": "sft",
                    "sft_step": index + 1,
                    "loss": float(loss.detach()),
                    "tokens": int(scored.logprobs.numel()),
                    "dataset_rows": len(rows),
                    "dataset_s": dataset_s,
                    "seconds": time.perf_counter() - step_started,
                    "time_s": time.perf_counter() - self.started,
                    "cpu_s": time.process_time() - self.cpu_started,
                }
                if self.dist.is_main:
                    _append_jsonl(self.out / METRICS_FILE, record)
                self.on_event("sft", record)
        finally:
            self.policy.eval()
            self.engine.drop_caches()

    # ----- one RL step --------------------------------------------------------------------------
    def _env_options(self, env_id: str) -> dict[str, Any]:
        return dict(self.config.rollout.env_options.get(env_id, {}))

    def _num_players(self, env_id: str) -> int:
        """Seats of the env as configured (options such as `num_players` may change them)."""
        if env_id not in self._seats:
            env = make(env_id, **self._env_options(env_id))
            self._seats[env_id] = len(env.players)
            env.close()
        return self._seats[env_id]

    def _seed(self, phase: str, step: int, env_number: int) -> int:
        base = {"sft": 1, "rl": 2, "branch": 3}[phase]
        # Each process of a multi-process run plays its own games (the main process's seeds are
        # the single-process ones).
        process = self.dist.rank * 15_485_863
        return (
            self.config.train.seed * 1_000_003
            + base * 10_000_019
            + step * 10_007
            + env_number * 101
            + process
        ) % (2**31)

    def _league_temperature(self, snapshot_step: int) -> float:
        """The sampling temperature of the league opponent taken at `snapshot_step`."""
        rollout = self.config.rollout
        temperature = (
            rollout.temperature if rollout.league_temperature is None else rollout.league_temperature
        )
        is_start_policy = snapshot_step == self.league.snapshots[0][0]
        if is_start_policy and rollout.first_snapshot_temperature is not None:
            return rollout.first_snapshot_temperature
        return temperature

    async def _rollouts(
        self, step: int | None = None, draw: tuple[int, dict[str, Any]] | None = None
    ) -> tuple[list[Episode], list[BranchGroup], dict[str, Any]]:
        """The episodes of RL step `step` (default: the current one), with league snapshot `draw`
        (default: drawn now); the branch points drawn from them with their continuations; facts
        about the rollout for the metrics."""
        rollout = self.config.rollout
        step = self.step if step is None else step
        remote = self.remote
        gather: Any = collect if remote is None else remote.collect

        def policy(prefix: str, temperature: float = rollout.temperature) -> Any:
            sampling = {
                "temperature": temperature,
                "top_p": rollout.top_p,
                "max_new_tokens": rollout.max_new_tokens,
                "session_prefix": prefix,
                "template": self.template.name,
            }
            if remote is not None:
                return remote.policy(**sampling)
            return policy_factory(self.engine, **sampling)

        snapshot_step, weights = self.league.draw(self.rng) if draw is None else draw
        league_temperature = self._league_temperature(snapshot_step)
        league_sampling = {
            "temperature": league_temperature,
            "top_p": rollout.top_p,
            "legal_retries": rollout.league_legal_retries,
            "legal_only": rollout.league_legal_only,
            "template": self.template.name,
        }
        if remote is not None:
            # The workers play with the weights after `self.step` updates (a no-op when they have them).
            remote.sync_policy(self.policy.state_dict(), version=self.step)
            remote.sync_league(_plain_state_dict(weights), tag=snapshot_step)
            remote_league = remote.league(**league_sampling)

            def league(prefix: str) -> Any:
                return remote_league

        else:
            self.league_engine.model.load_state_dict(_plain_state_dict(weights), strict=True)
            self.league_engine.drop_caches()

            def league(prefix: str) -> Any:
                # Jobs that run at once repeat episode ids: each gets its own session prefix.
                return policy_factory(self.league_engine, session_prefix=prefix, **league_sampling)

        jobs = []
        self_play_share = rollout.self_play_share(step)
        for env_number, env_id in enumerate(rollout.envs):
            players = self._num_players(env_id)
            self_play = round(rollout.episodes_per_step * self_play_share)
            league_games = rollout.episodes_per_step - self_play
            seed = self._seed("rl", step, env_number)
            options = self._env_options(env_id)
            if self_play:
                seating = Seating(
                    labels=(POLICY,) * players, factories={POLICY: policy(f"self{env_number}/")}
                )
                jobs.append(
                    gather(
                        env_id, options, seating, episodes=self_play, seed=seed, group_size=rollout.group_size
                    )
                )
            if league_games:
                seat_weights = rollout.league_seat_weights.get(env_id)
                # (labels, games, seed, alternate_seats) per rollout job: by default one job whose
                # runner swaps the seats every other episode; with seat weights, one job per seat.
                parts: list[tuple[tuple[str, ...], int, int, bool]]
                if seat_weights is None:
                    parts = [((POLICY, *([LEAGUE] * (players - 1))), league_games, seed + 500_000, True)]
                else:
                    parts = [
                        (
                            tuple(POLICY if other == seat else LEAGUE for other in range(players)),
                            games,
                            seed + 500_000 + 100_000 * (seat + 1),
                            False,
                        )
                        for seat, games in enumerate(league_seat_counts(seat_weights, league_games))
                        if games
                    ]
                for part, (labels, games, job_seed, alternate) in enumerate(parts):
                    prefix = f"league{env_number}.{part}/"
                    factories = {POLICY: policy(prefix), LEAGUE: league(prefix)}
                    jobs.append(
                        gather(
                            env_id,
                            options,
                            Seating(labels=labels, factories=factories),
                            episodes=games,
                            seed=job_seed,
                            group_size=rollout.group_size,
                            alternate_seats=alternate,
                        )
                    )
        batches = await asyncio.gather(*jobs)
        episodes = [episode for batch in batches for episode in batch]
        info: dict[str, Any] = {
            "league_snapshot": snapshot_step,
            "league_temperature": league_temperature,
            "self_play_share": self_play_share,
        }
        branches: list[BranchGroup] = []
        if rollout.branch_states:
            started = time.perf_counter()
            branches = await self._branches(step, episodes, policy, league)
            info["branch_s"] = time.perf_counter() - started
        return episodes, branches, info

    async def _branches(
        self,
        step: int,
        episodes: Sequence[Episode],
        policy: Callable[[str, float], Any],
        league: Callable[[str], Any],
    ) -> list[BranchGroup]:
        """Each env's branch points in this step's `episodes` and their continuations (one group
        per point, all played at once)."""
        rollout = self.config.rollout
        continuation = rollout.branch_temperature
        if continuation is None:
            continuation = rollout.temperature
        jobs = []
        points: list[BranchPoint] = []
        for env_number, env_id in enumerate(rollout.envs):
            rng = random.Random(self._seed("branch", step, env_number))
            mine = [episode for episode in episodes if episode.env_id == env_id]
            for point in branch_points(
                mine, _is_policy, rng, states=rollout.branch_states, max_actions=rollout.branch_actions
            ):
                prefix = f"branch{env_number}.{len(points)}/"
                source = point.episode
                if rollout.branch_opponent == "policy":
                    opponent = policy(prefix + "o/", continuation)
                else:
                    opponent = league(prefix)
                factories = branch_factories(
                    point,
                    {POLICY: policy(prefix, continuation), LEAGUE: opponent},
                    [episode_id(i) for i in range(len(point.actions))],
                )
                labels = tuple(source.agents.values())
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

    async def _rl_step(self) -> None:
        algorithm = self.config.algorithm
        started = time.perf_counter()
        if self._prefetched is not None:
            episodes, branches, rollout_info = await self._prefetched
            self._prefetched = None
        else:
            episodes, branches, rollout_info = await self._rollouts()
        overlap = self.remote is not None and self.config.rollout.async_rollouts
        if overlap and self.step + 1 < self.config.train.steps:
            # The next step's rollouts play on the Ray workers during this update. The league
            # draw happens here, not in the task: the update (in a thread) shuffles with self.rng.
            draw = self.league.draw(self.rng)
            self._prefetched = asyncio.create_task(self._rollouts(self.step + 1, draw))
        rollout_s = time.perf_counter() - started
        episodes, staleness = self._drop_stale(episodes)
        self.env_steps += sum(episode.num_steps for episode in episodes)
        self.env_steps += sum(episode.num_steps for _, group in branches for episode in group)
        batch = trajectories_from_episodes(episodes, players=_is_policy, config=self.config.rewards)
        branch_trajectories, branch_advantages, branch_stats = self._branch_batch(branches)
        trajectories = batch.trajectories + branch_trajectories
        update_started = time.perf_counter()
        critic_stats: dict[str, float] = {}
        value_targets: list[list[float]] | None = None
        if self.value_head is not None:
            trajectories = self._estimate_values(trajectories)
            all_values = [v for t in trajectories for v in t.values]
            critic_stats = {"value/mean": float(np.mean(all_values))} if all_values else {}
            value_targets = _value_targets(trajectories, algorithm.estimator_options)
            critic_stats.update(_explained_variance(trajectories, value_targets))
            critic_stats["critic_s"] = time.perf_counter() - update_started
        table_targets: list[list[float]] = []
        table_keys: list[list[bytes]] = []
        if self.value_table is not None:
            table_keys = [self.value_table.state_keys(t) for t in batch.trajectories]
            trajectories, table_targets, table_stats = self._table_values(batch.trajectories, table_keys)
            trajectories += branch_trajectories
            critic_stats.update(table_stats)
        # The estimator sees the ordinary games only (with the critic's values, when there is one);
        # the branch turns come with their own advantages.
        played = trajectories[: len(batch.trajectories)]
        advantages = (
            compute_advantages(played, algorithm.estimator, **algorithm.estimator_options) + branch_advantages
        )
        if self.value_table is not None:
            # After reading: no turn is its own baseline.
            self.value_table.update(played, table_targets, table_keys)

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
            "time_s": time.perf_counter() - self.started,
            # CPU seconds of this process: on a loaded machine, what the run would take alone.
            "cpu_s": time.process_time() - self.cpu_started,
            "rollout_s": rollout_s,
            "update_s": time.perf_counter() - update_started,
            "episodes": len(episodes),
            "env_steps": self.env_steps,
            "skipped_episodes": dict(batch.skipped_episodes),
            "lr": self.optimizer.param_groups[0]["lr"],
            **rollout_info,
            **staleness,
            **_rollout_metrics(episodes, batch.trajectories),
            **branch_stats,
            **update_stats,
        }
        if self.dist.is_main:
            _append_jsonl(self.out / METRICS_FILE, record)
        self.on_event("step", record)

    def _branch_batch(
        self, branches: Sequence[BranchGroup]
    ) -> tuple[list[Trajectory], list[list[float]], dict[str, Any]]:
        """The branching seat's trajectory of every continuation (only the chosen turn trains) and
        its per-turn advantages: the branch advantage on the chosen turn, 0 elsewhere."""
        if not branches:
            return [], [], {}
        gamma = float(self.config.algorithm.estimator_options.get("gamma", 1.0))
        weight = self.config.rollout.branch_weight
        trajectories: list[Trajectory] = []
        groups: list[list[float]] = []
        chances: list[list[float]] = []
        for point, group in branches:
            branch_turn = point.branch_turn
            found = continuation_trajectories(point, group, self.config.rewards)
            groups.append([branch_returns(t.turn_rewards, branch_turn, gamma) for t in found])
            # The policy's probability of each first move: its answer's log-probs, summed.
            chances.append([math.exp(sum(t.logprobs[branch_turn] or [0.0])) for t in found])
            # Cut after the chosen turn (now each trajectory's last): the rest of the game is not
            # trained and would only lengthen the rows.
            trajectories += [t.head(branch_turn + 1) for t in found]
        advantages: list[list[float]] = []
        policy_weighted = self.config.rollout.branch_weighting == "policy"
        flat = [a for group in branch_advantages(groups, chances if policy_weighted else None) for a in group]
        for trajectory, advantage in zip(trajectories, flat, strict=True):
            advantages.append([0.0] * (trajectory.num_turns - 1) + [weight * advantage])
        return (
            trajectories,
            advantages,
            {
                "branch_points": len(branches),
                "branch_episodes": sum(len(group) for _, group in branches),
                # The share of positions whose continuations disagreed: the ones that teach anything.
                "branch_informative": float(np.mean([np.ptp(g) > 1e-9 if g else False for g in groups])),
            },
        )

    def _drop_stale(self, episodes: list[Episode]) -> tuple[list[Episode], dict[str, Any]]:
        """Keep the episodes whose policy weights lag at most `rollout.max_staleness` updates behind
        the weights about to be updated (version `self.step`); count the rest."""
        if self.remote is None:
            return episodes, {}
        limit = self.config.rollout.max_staleness
        kept: list[Episode] = []
        lags: list[int] = []
        for episode in episodes:
            version = getattr(episode, "weight_version", None)
            lag = 0 if version is None else self.step - version
            if lag > limit:
                continue
            kept.append(episode)
            lags.append(lag)
        dropped = len(episodes) - len(kept)
        self.stale_dropped += dropped
        return kept, {
            "weight_version": self.step,
            "stale_dropped": dropped,
            "stale_dropped_total": self.stale_dropped,
            "weight_lag_mean": float(np.mean(lags)) if lags else 0.0,
            "weight_lag_max": max(lags, default=0),
        }

    def _table_values(
        self, trajectories: Sequence[Trajectory], keys: Sequence[list[bytes]]
    ) -> tuple[list[Trajectory], list[list[float]], dict[str, float]]:
        """The trajectories with `values` from the lookup-table critic (`keys`: their contexts),
        their λ-return targets and the table's metrics."""
        assert self.value_table is not None
        values, seen = self.value_table.values(trajectories, keys)
        filled = [dataclasses.replace(t, values=v) for t, v in zip(trajectories, values, strict=True)]
        targets = _value_targets(filled, self.config.algorithm.estimator_options)
        stats = {"value_table/seen": seen, "value_table/states": float(len(self.value_table.states))}
        stats.update(_explained_variance(filled, targets))
        return filled, targets, stats

    def _estimate_values(self, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
        """The trajectories with `values` filled by the critic's V(s_k), one per turn: the value
        head on the hidden state that chose the turn's first answer token (one forward pass, no
        gradient)."""
        assert self.value_head is not None
        rows: list[TrainRow] = []
        owners: list[tuple[int, list[tuple[int, int]]]] = []  # per row: its trajectory, (slot, turn)s
        for number, trajectory in enumerate(trajectories):
            for row, train_row in _trainable_rows(trajectory):
                rows.append(train_row)
                owners.append((number, _choosing_targets(row)))
        values = [[math.nan] * t.num_turns for t in trajectories]
        if rows:
            with torch.inference_mode():
                scored = token_logprobs(self.policy, TrainBatch.from_rows(rows), value_head=self.value_head)
            assert scored.values is not None
            offsets = scored.row_offsets.tolist()
            flat = scored.values.float().cpu().tolist()
            for row_number, (number, choosing) in enumerate(owners):
                for slot, turn in choosing:
                    values[number][turn] = flat[offsets[row_number] + slot]
        for per_turn in values:
            # A turn without a trainable token has no choosing state; it passes on the value of
            # the turn after it (0 after the last), so it adds nothing to bootstrapped estimates.
            following = 0.0
            for k in range(len(per_turn) - 1, -1, -1):
                if math.isnan(per_turn[k]):
                    per_turn[k] = following
                following = per_turn[k]
        return [dataclasses.replace(t, values=v) for t, v in zip(trajectories, values, strict=True)]

    def _update(
        self,
        trajectories: Sequence[Trajectory],
        advantages: Sequence[Sequence[float]],
        value_targets: Sequence[Sequence[float]] | None = None,
    ) -> dict[str, Any]:
        algorithm = self.config.algorithm
        rows: list[TrainRow] = []
        row_advantages: list[list[float]] = []
        row_rollout_logprobs: list[list[float] | None] = []
        # Per row: which of its targets choose a turn (the first of each turn), and that turn's
        # λ-return, which the value head regresses onto.
        row_value_slots: list[list[int]] = []
        row_value_targets: list[list[float]] = []
        for number, (trajectory, per_turn) in enumerate(zip(trajectories, advantages, strict=True)):
            for row, train_row in _trainable_rows(trajectory):
                rows.append(train_row)
                targets = [i for i, flag in enumerate(row.loss_mask) if flag]
                row_advantages.append([float(per_turn[row.turn_index[i]]) for i in targets])
                row_rollout_logprobs.append(
                    None if row.rollout_logprobs is None else [row.rollout_logprobs[i] for i in targets]
                )
                if value_targets is not None:
                    choosing = _choosing_targets(row)
                    row_value_slots.append([slot for slot, _ in choosing])
                    row_value_targets.append([float(value_targets[number][turn]) for _, turn in choosing])
        factor = _lr_factor(algorithm.lr_schedule, self.step, self.config.train.steps, algorithm.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = group.get("base_lr", algorithm.lr) * factor
        # Several processes update together or not at all (each backward pass meets the others').
        if not (self.dist.sum(len(rows)) if self.dist.active else rows):
            return {"rows": 0}
        order = list(range(len(rows)))
        stats_sum: dict[str, float] = {}
        updates = 0
        grad_norms: list[float] = []
        old_all: list[torch.Tensor] | None = None
        # Overlapping rollouts may come from the previous weights: their own sampling log-probs
        # are then PPO's old ones, so the ratio corrects for the lag even in a single epoch.
        behind = self.remote is not None and self.config.rollout.async_rollouts
        if algorithm.epochs > 1 or algorithm.minibatches > 1 or behind:
            if all(logprobs is not None for logprobs in row_rollout_logprobs):
                # The rollouts were sampled by these very weights, and the engine reports
                # log pi(token) exactly as a forward pass recomputes it (checked every step by
                # the importance-ratio stats), so the sampling log-probs serve as PPO's old ones
                # and save a forward pass over the batch.
                old_all = [torch.tensor(values or []) for values in row_rollout_logprobs]
            else:
                with torch.inference_mode():
                    old_all = token_logprobs(self.policy, TrainBatch.from_rows(rows)).per_row()
        ratio_check: dict[str, float] = {}
        self.policy.train()
        try:
            for epoch in range(algorithm.epochs):
                if epoch:
                    self.rng.shuffle(order)
                if algorithm.minibatches > 1:
                    # Whole prefix groups per minibatch, so shared prompts are computed once.
                    shuffled = [rows[i] for i in order]
                    chunks = [
                        [order[j] for j in part]
                        for part in minibatch_indices(shuffled, algorithm.minibatches, rng=self.rng)
                    ]
                else:
                    chunks = [order]
                for chunk in chunks:
                    if not chunk and not self.dist.active:
                        continue
                    # A process whose minibatch came out empty scores a dummy row at weight 0:
                    # its backward pass must still meet the others' in the gradient all-reduce.
                    chunk_rows = [rows[i] for i in chunk] or [dummy_row()]
                    with_values = value_targets is not None
                    scored = self.dist.score(
                        self.scorer,
                        TrainBatch.from_rows(chunk_rows),
                        with_entropy=algorithm.entropy_coef > 0,
                        with_values=with_values,
                    )
                    logprobs = scored.logprobs
                    advantages_flat = torch.tensor(
                        [a for i in chunk for a in row_advantages[i]] or [0.0], dtype=logprobs.dtype
                    )
                    if old_all is None or not chunk:
                        old = logprobs.detach()
                    else:
                        old = torch.cat([old_all[i] for i in chunk]).to(logprobs.dtype)
                    if epoch == 0 and not ratio_check and chunk:
                        ratio_check = self._ratio_check(logprobs, chunk, row_rollout_logprobs)
                    reference = None
                    if self.reference is not None:
                        with torch.inference_mode():
                            reference = token_logprobs(
                                self.reference, TrainBatch.from_rows(chunk_rows)
                            ).logprobs
                        reference = reference.clone()
                    mask = torch.ones_like(logprobs)
                    normalizer = None
                    if self.dist.active:
                        local = logprobs.numel() if algorithm.aggregation == "token-mean" else len(chunk_rows)
                        normalizer = self.dist.normalizer(local if chunk else 0)
                    loss, stats = ppo_objective(
                        logprobs,
                        old,
                        advantages_flat,
                        mask,
                        ref_logprobs=reference,
                        entropy=scored.entropy,
                        kl_coef=algorithm.kl_coef,
                        entropy_coef=algorithm.entropy_coef,
                        clip=algorithm.clip,
                        dual_clip=algorithm.dual_clip,
                        aggregation=algorithm.aggregation,
                        normalizer=normalizer,
                        segment_ids=scored.row_index,
                    )
                    if with_values and chunk:
                        assert scored.values is not None
                        value_loss = self._value_loss(
                            scored.values, chunk, row_advantages, row_value_slots, row_value_targets
                        )
                        loss = loss + algorithm.value_coef * value_loss
                        stats["value"] = float(value_loss.detach())
                    elif with_values:  # a dummy pass: the value head still meets the all-reduce
                        assert scored.values is not None
                        loss = loss + scored.values.sum() * 0.0
                    if not chunk:
                        loss = loss * 0.0
                    self.optimizer.zero_grad(set_to_none=True)
                    self.dist.backward(loss)
                    norm = self.dist.clip_grad_norm_(self._trained_parameters(), algorithm.grad_clip)
                    grad_norms.append(float(norm))
                    self.optimizer.step()
                    if not chunk:
                        continue  # a dummy pass: nothing of this process's to report
                    updates += 1
                    for key, value in stats.items():
                        stats_sum[key] = stats_sum.get(key, 0.0) + float(value)
        finally:
            self.policy.eval()
        averaged = {f"loss/{key}": value / updates for key, value in stats_sum.items()} if updates else {}
        return {
            "rows": len(rows),
            "trained_tokens": sum(len(a) for a in row_advantages),
            "grad_norm": float(np.mean(grad_norms)) if grad_norms else 0.0,
            **averaged,
            **ratio_check,
        }

    @staticmethod
    def _value_loss(
        values: torch.Tensor,
        chunk: Sequence[int],
        row_targets: Sequence[Sequence[float]],
        row_value_slots: Sequence[Sequence[int]],
        row_value_targets: Sequence[Sequence[float]],
    ) -> torch.Tensor:
        """The Huber loss (δ = 1) of the value head at each turn's choosing state in `chunk`: ½ x²
        near the target, |x| − ½ beyond, so a rare large return (an illegal move's −11) cannot
        swamp the trunk the policy shares."""
        indices: list[int] = []
        goals: list[float] = []
        offset = 0
        for i in chunk:
            indices += [offset + slot for slot in row_value_slots[i]]
            goals += row_value_targets[i]
            offset += len(row_targets[i])
        predicted = values.index_select(0, torch.tensor(indices, device=values.device))
        goal = torch.tensor(goals, dtype=predicted.dtype, device=predicted.device)
        return torch.nn.functional.huber_loss(predicted, goal, delta=1.0)

    def _ratio_check(
        self, logprobs: torch.Tensor, chunk: Sequence[int], rollout: Sequence[list[float] | None]
    ) -> dict[str, float]:
        if any(rollout[i] is None for i in chunk):
            return {}
        rollout_flat = torch.tensor([v for i in chunk for v in rollout[i] or []], dtype=logprobs.dtype)
        stats = importance_ratio_stats(logprobs.detach(), rollout_flat, torch.ones_like(rollout_flat))
        return {f"rollout_vs_train/{key}": float(value) for key, value in stats.items()}

    # ----- evaluation, checkpoints --------------------------------------------------------------
    async def _evaluate(self, stage: str, episodes: int) -> list[EvalCell]:
        if not self.dist.is_main:
            return []  # the processes hold the same weights: one evaluation is enough

        def policy(prefix: str) -> Any:
            return policy_factory(
                self.engine,
                temperature=self.config.eval.temperature,
                session_prefix=prefix,
                template=self.template.name,
            )

        cells: list[EvalCell] = []
        for env_id in self.config.rollout.envs:
            opponents = opponents_for(env_id, self.config.eval.opponents)
            cells += await evaluate(
                policy,
                env_id,
                self._env_options(env_id),
                opponents,
                episodes=episodes,
                num_players=self._num_players(env_id),
            )
        for cell in cells:
            _append_jsonl(
                self.out / EVAL_FILE,
                {
                    "stage": stage,
                    "step": self.step,
                    "time_s": time.perf_counter() - self.started,
                    "cpu_s": time.process_time() - self.cpu_started,
                    **cell.to_dict(),
                },
            )
        self.on_event("eval", {"stage": stage, "step": self.step, "cells": cells})
        return cells

    def _checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        state = {
            "step": self.step,
            "env_steps": self.env_steps,
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_state(),
            "trainer_rng": self.rng.getstate(),
            "league": self.league.state(),
            "value_head": None if self.value_head is None else self.value_head.state_dict(),
            "value_table": None if self.value_table is None else self.value_table.state(),
            "elapsed_s": time.perf_counter() - self.started,
            "stale_dropped": self.stale_dropped,
        }
        save_checkpoint(
            self.out, self.step, self.policy, self.engine.tokenizer, state, self.config.train.keep_checkpoints
        )

    def _restore(self, state: dict[str, Any]) -> None:
        saved_critic = state.get("value_head") is not None
        if saved_critic != (self.value_head is not None):
            raise TrainError(
                "the checkpoint was trained "
                + (
                    "with a critic; resume with algorithm.value_coef > 0"
                    if saved_critic
                    else "without a critic; resume with algorithm.value_coef = 0"
                )
            )
        self.step = int(state["step"])
        self.env_steps = int(state["env_steps"])
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.rng.setstate(state["trainer_rng"])
        self.league.load(state["league"])
        if self.value_head is not None:
            self.value_head.load_state_dict(state["value_head"])
        if self.value_table is not None:
            if state.get("value_table") is None:
                raise TrainError(
                    "the checkpoint was trained without algorithm.value_table; resume without it"
                )
            self.value_table.load(state["value_table"])
        self.stale_dropped = int(state.get("stale_dropped", 0))
        # The time budget counts the whole run, killed part included.
        self.started -= float(state.get("elapsed_s", 0.0))
        if not self.dist.is_main:
            return
        _truncate_jsonl(
            self.out / METRICS_FILE, lambda r: r.get("phase") == "sft" or r.get("step", 0) <= self.step
        )
        _truncate_jsonl(self.out / EVAL_FILE, lambda r: r.get("step", 0) <= self.step)

    def _export_final(self) -> Path | None:
        if not self.dist.is_main:
            return None
        final = self.out / "final"
        tmp = self.out / ".final.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        self.policy.save_pretrained(tmp)
        self.engine.tokenizer.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        return final


def _trainable_rows(trajectory: Trajectory) -> list[tuple[Any, TrainRow]]:
    """The trajectory's token rows that have something to learn, each with its `TrainRow`
    (rows sharing a prompt share a prefix group)."""
    return [
        (row, TrainRow(tuple(row.input_ids), tuple(row.loss_mask), prefix_group=_prompt_key(row)))
        for row in trajectory.token_rows()
        if any(row.loss_mask)
    ]


def _choosing_targets(row: Any) -> list[tuple[int, int]]:
    """`(slot, turn)` for the first trained token of each turn in the row (slot counts the row's
    trained tokens): the state that chose the turn's answer, where the critic reads its value."""
    choosing: list[tuple[int, int]] = []
    seen: set[int] = set()
    targets = (position for position, flag in enumerate(row.loss_mask) if flag)
    for slot, position in enumerate(targets):
        turn = row.turn_index[position]
        if turn not in seen:
            seen.add(turn)
            choosing.append((slot, turn))
    return choosing


def _prompt_key(row: Any) -> tuple[int, ...]:
    """The row's ids up to its first sampled token: rows with the same key share that prompt.

    Self-play revisits the same positions again and again (every game opens on the empty
    board), so grouping rows by their exact prompt lets the forward pass compute each distinct
    prompt once per batch.
    """
    first_target = row.loss_mask.index(1) if 1 in row.loss_mask else len(row.loss_mask)
    return tuple(row.input_ids[:first_target])


def _is_policy(episode: Episode, player: str) -> bool:
    return episode.agents.get(player) == POLICY


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


def _plain_state_dict(weights: dict[str, Any]) -> dict[str, Any]:
    return weights


def _truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop records written after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if keep(record):
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def _stored_evaluations(path: Path) -> dict[str, list[EvalCell]]:
    found: dict[str, list[EvalCell]] = {}
    if not path.exists():
        return found
    fields = set(EvalCell.__dataclass_fields__)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        found.setdefault(record["stage"], []).append(EvalCell(**{k: record[k] for k in fields}))
    return found


def _value_targets(trajectories: Sequence[Trajectory], options: dict[str, Any]) -> list[list[float]]:
    """Each turn's λ-return against the trajectories' `values` (λ and γ from the estimator's
    options, 1 when unset): what a critic learns towards."""
    lam, gamma = float(options.get("gae_lambda", 1.0)), float(options.get("gamma", 1.0))
    return [
        lambda_returns(
            np.asarray(t.turn_rewards, dtype=np.float64), np.asarray(t.values, dtype=np.float64), lam, gamma
        )[1].tolist()
        for t in trajectories
    ]


def _explained_variance(
    trajectories: Sequence[Trajectory], targets: Sequence[Sequence[float]]
) -> dict[str, float]:
    """How much of the λ-returns' variance the critic's values explain (1 perfect, 0 no better
    than their mean, negative worse)."""
    goal = np.asarray([g for per_turn in targets for g in per_turn], dtype=np.float64)
    if goal.size < 2 or goal.var() == 0:
        return {}
    guess = np.asarray([v for t in trajectories for v in t.values], dtype=np.float64)
    return {"value/explained_variance": float(1.0 - (goal - guess).var() / goal.var())}


def _rollout_metrics(episodes: Sequence[Episode], trajectories: Sequence[Trajectory]) -> dict[str, Any]:
    """Outcome, legality and reward statistics of the policy's side of the rollouts."""
    policy_turns = illegal = 0
    wins = draws = losses = 0
    league_games = 0
    for episode in episodes:
        seats = [p for p, agent in episode.agents.items() if agent == POLICY]
        for player in seats:
            for turn in episode.player_turns(player):
                policy_turns += 1
                illegal += turn.invalid is not None
        if len(seats) == len(episode.agents) or episode.status != "ok":
            continue
        league_games += 1
        me = seats[0]
        mine = episode.returns.get(me, 0.0)
        theirs = max(v for p, v in episode.returns.items() if p != me)
        wins += mine > theirs
        draws += mine == theirs
        losses += mine < theirs
    rewards = [r for t in trajectories for r in t.turn_rewards]
    lengths = [t.num_turns for t in trajectories]
    return {
        "illegal_rate": illegal / policy_turns if policy_turns else 0.0,
        "league_win_rate": wins / league_games if league_games else None,
        "league_loss_rate": losses / league_games if league_games else None,
        "mean_turn_reward": float(np.mean(rewards)) if rewards else 0.0,
        "mean_return": float(np.mean([t.outcome for t in trajectories])) if trajectories else 0.0,
        "mean_turns": float(np.mean(lengths)) if lengths else 0.0,
        "trajectories": len(trajectories),
    }
