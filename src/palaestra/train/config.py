"""The training configuration: one TOML file, validated by pydantic, recorded in the run folder.

Every section has defaults that make `palaestra train` with an almost empty file do the embedded
main job (the tiny model learns tic-tac-toe on a CPU). `load_config(path)` reads and validates;
errors name the offending key in one line.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from palaestra.core.casts import Cast
from palaestra.train.curriculum import CurriculumSection
from palaestra.train.rewards import RewardConfig

TRACKING_BACKENDS = ("tensorboard", "wandb")
"""What `train.report_to` may name (`palaestra.train.tracking`)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSection(_Section):
    """Which policy to train.

    Fields:
        init: `tiny` (the embedded model, freshly initialised from `seed` with the sizes below) or a
            Hugging Face model folder.
        seed: initialisation seed for `tiny`.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: `tiny` sizes.
        lora: train LoRA adapters (peft) instead of all weights; `lora_rank`, `lora_alpha`.
        device: `auto` (CUDA when present), `cpu` or `cuda`.
        template: the prompt template the policy plays, learns and is evaluated with: `auto` (the
            model's own: `compact` for the tiny model), `compact`, `board`, `seat_first` or
            `mars`. Recorded in the checkpoints and the final model, so `llm:hf:RUN/final` plays
            with it too.
        memory: how the policy (and its league snapshots) keep a conversation: `auto` (a model
            session per episode and seat in conversation envs such as the service ones, whose
            turns are only the new messages; the template's own choice, a fresh context every
            turn for `compact` and `board`, in games), `session` or `turn` (`LLMAgent.memory`).
    """

    init: str = "tiny"
    seed: int = 0
    hidden_size: int | None = 64
    num_hidden_layers: int | None = 2
    num_attention_heads: int | None = 4
    intermediate_size: int | None = 256
    lora: bool = False
    lora_rank: int = Field(default=8, ge=1)
    lora_alpha: float = 16.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    template: Literal["auto", "compact", "board", "seat_first", "mars"] = "auto"
    memory: Literal["auto", "session", "turn"] = "auto"


class SFTSection(_Section):
    """The optional cold start: supervised learning on episodes of scripted play.

    It teaches the answer format and legality, not strategy: the default teachers play uniformly
    random legal moves. The episodes are played once into a dataset (every seat's turns, rendered
    exactly as the policy would see them), then `steps` minibatch updates sweep it.

    Fields:
        steps: minibatch updates (0: no cold start).
        episodes: episodes of scripted play in the dataset.
        batch_rows: rows (one model context each) per update.
        lr: learning rate (constant).
        agents: the teacher agent spec per seat (cycled).
    """

    steps: int = Field(default=0, ge=0)
    episodes: int = Field(default=1000, ge=1)
    batch_rows: int = Field(default=256, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    agents: list[str] = Field(default_factory=lambda: ["random", "random"])


class RolloutSection(_Section):
    """How episodes are gathered each step.

    Fields:
        envs: env ids; each step plays `episodes_per_step` episodes of each (per-game batches).
        env_options: options for `make` per env id.
        episodes_per_step: episodes per env per step.
        group_size: episodes sharing one env seed (for `grpo`/`flow_grpo` groups); 1 for MARS.
        temperature, top_p, max_new_tokens: sampling of the policy in rollouts.
        casts: per env id, who sits in each seat (`palaestra.core.casts.Cast`, docs/casts.md):
            the seats the learner plays and, for the others, the learner itself, league
            snapshots or fixed agent specs, each with a weight (one seating drawn per episode,
            or per group of `group_size` episodes). An env without an entry gets its family's
            default cast (service envs: the learner in the `agent` seat, `scripted_user` in the
            `user` seat) or, for games, the game default that the next options shape.
        self_play: (envs on the game default) share of episodes where the policy sits in every
            seat; the rest put a frozen snapshot of itself (the league) in the other seats.
        self_play_schedule: `[[step, share], ...]`, steps increasing: the self-play share changes
            over training, linearly between the points, held before the first and after the last
            (instead of `self_play`; setting both is an error). E.g. `[[60, 0.0], [220, 0.5]]`:
            play only the league until step 60, then let self-play (an opponent that punishes every
            mistake) take over half the games by step 220.
        snapshot_every: steps between snapshots added to the league.
        league_size: most recent snapshots kept (the first snapshot, the start policy, stays).
        first_snapshot_share: chance that a league game uses the start policy.
        league_seat_weights: (envs on the game default; a cast's `learner = { seat = weight }`
            does this for a cast) per env id, how often the policy takes each seat in league games
            (relative weights, one per seat: `{"tic_tac_toe-v0" = [1, 2]}` puts it second in two
            games of three); an env not listed alternates its seats evenly.
        branch_states: positions per env per step to branch from (0: no branching): after the
            step's episodes, that many of the policy's turns are drawn from them, and from each a
            group of continuations is played, one per first action, whose chosen turns train
            with a group-relative advantage (`palaestra.train.branching`). Needs the local
            executor and an engine that constrains decoding (tiny, `hf:`), and an env that
            replays from its seed and text actions. Keep the branch turns a minority of the
            batch's trained tokens: each position's advantages sum to zero, so they never sharpen
            the policy, and beside too few ordinary games the entropy bonus wins (measured: 64
            positions, about 520 continuations, beside 64 games drove the policy to 4.4 nats per
            token and 97% illegal moves by step 60; docs/benchmarks.md, branching rollouts,
            commits 295e537 to 87ba238).
        branch_actions: at most this many continuations (distinct first actions) per position;
            positions with more legal actions draw that many of them.
        branch_opponent: who plays the other seats of a continuation: `source` (the agents of
            the game the position came from: a league snapshot, or the policy in self-play) or
            `policy` (the policy itself, which takes the wins a weak move leaves it more often
            than a hot snapshot does, so a missed block shows in the returns).
        branch_temperature: the policy's sampling temperature in continuations after the chosen
            move (and the opponent's with `branch_opponent = "policy"`); default `temperature`.
            0 makes a continuation the greedy policy's own verdict on the move, without the
            sampling noise of the rest of the game.
        branch_weighting: `uniform` (every first move's continuation weighs alike, centred on the
            position's mean return) or `policy` (each weighted by the policy's probability of that
            move and centred on the policy's expected return: the exact on-policy gradient at the
            position; `branching.branch_advantages`).
        branch_weight: multiplies the branch turns' advantages (which are on the unit scale of
            `mars`'s normalized returns).
        turn_timeout_s: per decision.
        engine_batch_size: most sessions in one forward pass of the local engine (1 makes
            rollouts bit-for-bit reproducible, since float sums then never depend on batching).
        league_temperature: sampling temperature of league opponents (default: `temperature`);
            higher values show the policy more varied positions.
        first_snapshot_temperature: sampling temperature of the start policy when it is the league
            opponent (default: `league_temperature`): a hot start policy plays almost at random,
            while cooler recent snapshots punish mistakes.
        league_legal_retries: a league opponent whose sampled answer is illegal samples again up
            to this many times (its policy conditioned on legal moves): hot snapshots then show
            varied positions instead of ending games early with an illegal move.
        league_legal_only: league opponents decode only legal answers (constrained decoding: the
            same conditioned policy as `league_legal_retries` in one model call; needs the local
            engine, which the tiny model and `hf:` checkpoints use).
        executor: where rollouts run: `local` (this process's engine) or
            `ray[:ADDRESS][?workers=N&cpus=C&gpus=G]` (Ray workers, each with its own copy of the
            policy and league engines; new weights are broadcast to them after every update).
            See docs/scaling.md.
        async_rollouts: with a Ray executor, play the next step's rollouts while this step's
            update runs (on the weights before it); the workers take the new weights as soon as
            their running episodes end. Faster, slightly off-policy (PPO's ratio corrects it).
        max_staleness: episodes whose policy weights are more than this many updates older than
            the weights being updated are dropped (and counted as `stale_dropped`).
        worker_engine: with a Ray executor, the engine each worker hosts: `hf` (`LocalEngine`,
            CPU or GPU) or `vllm` (`VLLMEngine`, GPU; give the executor `gpus=`).
        curriculum: what changes with the step (`palaestra.train.curriculum`): a horizon
            schedule (`max_turns` grows every N steps, ScalingInter-RL), a difficulty schedule
            over any env option, and learning-progress sampling over a set of training envs.
            Evaluation plays the configured options throughout.
    """

    envs: list[str] = Field(default_factory=lambda: ["tic_tac_toe-v0"], min_length=1)
    env_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    episodes_per_step: int = Field(default=192, ge=1)
    group_size: int = Field(default=1, ge=1)
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    self_play: float = Field(default=0.34, ge=0, le=1)
    self_play_schedule: list[tuple[int, float]] | None = None
    snapshot_every: int = Field(default=10, ge=1)
    league_size: int = Field(default=10, ge=1)
    first_snapshot_share: float = Field(default=0.5, ge=0, le=1)
    league_seat_weights: dict[str, list[float]] = Field(default_factory=dict)
    branch_states: int = Field(default=0, ge=0)
    branch_actions: int = Field(default=9, ge=2)
    branch_opponent: Literal["source", "policy"] = "source"
    branch_temperature: float | None = Field(default=None, ge=0)
    branch_weighting: Literal["uniform", "policy"] = "uniform"
    branch_weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    casts: dict[str, Cast] = Field(default_factory=dict)
    turn_timeout_s: float = Field(default=120.0, gt=0)
    engine_batch_size: int = Field(default=256, ge=1)
    league_temperature: float | None = Field(default=None, ge=0)
    first_snapshot_temperature: float | None = Field(default=None, ge=0)
    league_legal_retries: int = Field(default=0, ge=0)
    league_legal_only: bool = False
    executor: str = "local"
    async_rollouts: bool = False
    max_staleness: int = Field(default=1, ge=0)
    worker_engine: Literal["hf", "vllm"] = "hf"
    curriculum: CurriculumSection | None = None

    @model_validator(mode="before")
    @classmethod
    def _opponents_moved_to_casts(cls, data: Any) -> Any:
        if isinstance(data, dict) and "opponents" in data:
            raise ValueError(
                "rollout.opponents is gone: say who sits in the other seats with rollout.casts "
                '(docs/casts.md), e.g. [rollout.casts."kuhn_poker-v0"] learner = "any", '
                'others = [{ agent = "cfr" }]'
            )
        return data

    @model_validator(mode="after")
    def _check_casts(self) -> RolloutSection:
        for env_id in self.casts:
            if env_id not in self.envs:
                raise ValueError(f"rollout.casts names {env_id!r}, which is not in rollout.envs")
            if env_id in self.league_seat_weights:
                raise ValueError(
                    f"rollout.league_seat_weights[{env_id!r}]: {env_id} has a cast; weigh its seats "
                    "there (learner = { seat = weight, ... })"
                )
        return self

    @model_validator(mode="after")
    def _check_curriculum(self) -> RolloutSection:
        if self.curriculum is not None:
            self.curriculum.check_envs(self.envs)
        return self

    @model_validator(mode="after")
    def _check_self_play_schedule(self) -> RolloutSection:
        points = self.self_play_schedule
        if points is None:
            return self
        if not points:
            raise ValueError("rollout.self_play_schedule needs at least one [step, share] point")
        if "self_play" in self.model_fields_set:
            raise ValueError("set rollout.self_play or rollout.self_play_schedule, not both")
        steps = [step for step, _ in points]
        if any(step < 0 for step in steps) or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"rollout.self_play_schedule steps must be >= 0 and increasing, got {steps}")
        if any(not 0.0 <= share <= 1.0 for _, share in points):
            raise ValueError(
                f"rollout.self_play_schedule shares must be in [0, 1], got {[s for _, s in points]}"
            )
        return self

    @model_validator(mode="after")
    def _check_league_seat_weights(self) -> RolloutSection:
        for env_id, weights in self.league_seat_weights.items():
            if env_id not in self.envs:
                raise ValueError(
                    f"rollout.league_seat_weights names {env_id!r}, which is not in rollout.envs"
                )
            if not weights or any(weight < 0 for weight in weights) or sum(weights) <= 0:
                raise ValueError(
                    f"rollout.league_seat_weights[{env_id!r}] must be weights >= 0 with a positive sum, "
                    f"one per seat, got {weights}"
                )
        return self

    @model_validator(mode="after")
    def _check_branching(self) -> RolloutSection:
        if self.branch_states and self.executor != "local":
            raise ValueError(
                "rollout.branch_states needs rollout.executor = 'local' (branches replay on this engine)"
            )
        return self

    def self_play_share(self, step: int) -> float:
        """The self-play share at RL step `step`: from the schedule if set, else `self_play`."""
        points = self.self_play_schedule
        if not points:
            return self.self_play
        if step <= points[0][0]:
            return float(points[0][1])
        for (left, low), (right, high) in itertools.pairwise(points):
            if step <= right:
                return float(low + (high - low) * (step - left) / (right - left))
        return float(points[-1][1])


class AlgorithmSection(_Section):
    """The update.

    Fields:
        estimator: advantage estimator name (`mars`, `grpo`, `reinforce`, `flow_grpo`).
        estimator_options: extra keyword options for it (e.g. `center_per_player = true`).
        clip, dual_clip: PPO ratio clip and dual-clip bound.
        kl_coef: k3 KL to the frozen reference (the start policy) as a loss term.
        entropy_coef: entropy bonus.
        aggregation: `token-mean` or `sequence-mean`.
        lr, lr_schedule, warmup_steps, weight_decay, grad_clip: the optimizer.
        epochs, minibatches: passes and splits over each step's batch.
        value_coef: weight of the critic's loss; > 0 adds a critic, a value head (one linear
            layer) on the policy's hidden state where each turn's answer is chosen, trained to the
            turns' λ-returns (Huber loss, δ = 1) with the policy in the same update. Its
            values fill `Trajectory.values`, which `mars` with `gae_lambda` reads.
        value_lr: the value head's learning rate (default: `lr`), on the same schedule. A head
            that starts at zero and moves at a small policy rate lags the returns for many steps.
        value_table: a lookup-table critic instead (`palaestra.train.value_table`): V(s) is the
            running mean of the λ-returns that followed the turn's exact token context, shrunk
            towards the mean of its (game, seat, turn number) while it has few visits. For envs
            whose positions recur (board games); it fills the same `Trajectory.values`.
        value_table_rate: the table's smallest step size (a running mean, then this moving
            average, so it follows a changing policy).
        value_table_prior: visits' worth of weight on the coarse mean in V(s).
    """

    estimator: str = "mars"
    estimator_options: dict[str, Any] = Field(default_factory=dict)
    clip: float = Field(default=0.2, gt=0)
    dual_clip: float | None = Field(default=3.0, gt=1)
    kl_coef: float = Field(default=0.0, ge=0)
    entropy_coef: float = Field(default=0.02, ge=0)
    aggregation: Literal["token-mean", "sequence-mean"] = "token-mean"
    lr: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "linear", "cosine"] = "linear"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    epochs: int = Field(default=1, ge=1)
    minibatches: int = Field(default=1, ge=1)
    value_coef: float = Field(default=0.0, ge=0)
    value_lr: float | None = Field(default=None, gt=0)
    value_table: bool = False
    value_table_rate: float = Field(default=0.05, gt=0, le=1)
    value_table_prior: float = Field(default=4.0, ge=0)


class EvalSection(_Section):
    """Periodic evaluation against fixed opponents, in every seat the learner plays.

    Fields:
        every: steps between evaluations (0: only before and after training).
        envs: the env ids evaluated (default: `rollout.envs`). Envs outside `rollout.envs` are
            held out: the policy never trains on them, and their `eval.jsonl` records say
            `held_out = true`.
        env_options: options for `make` per evaluated env id (default: the env's
            `rollout.env_options` entry), e.g. a service env's test split (`subset = "test"`).
        opponents: agent specs per env id; each sits in every seat the learner leaves, with the
            learner in each seat its cast gives it in turn (every seat for games). Defaults: for
            envs whose family declares a cast (service), the env's cast (its `rollout.casts`
            entry when that has fixed agents only, else the family's: `scripted_user`); for
            games, random and the env's solver where known.
        casts: per env id, an evaluation cast (`rollout.casts`' shape, fixed agents only) instead
            of `opponents`: every combination of its candidates is one evaluation cell, weights
            aside.
        episodes: games per opponent per seat.
        final_episodes: games per opponent per seat in the final evaluation.
        temperature: sampling temperature of the policy in evaluation (0: greedy).
    """

    every: int = Field(default=25, ge=0)
    envs: list[str] | None = Field(default=None, min_length=1)
    env_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    opponents: dict[str, list[str]] = Field(default_factory=dict)
    casts: dict[str, Cast] = Field(default_factory=dict)
    episodes: int = Field(default=100, ge=1)
    final_episodes: int = Field(default=400, ge=1)
    temperature: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _check_casts(self) -> EvalSection:
        for env_id, cast in self.casts.items():
            if not cast.only_fixed:
                raise ValueError(
                    f"eval.casts[{env_id!r}]: evaluation seats take fixed agents only "
                    '({ agent = "SPEC" }), not self or league'
                )
            if env_id in self.opponents:
                raise ValueError(f"eval.casts[{env_id!r}]: {env_id} has eval.opponents too; choose one")
        return self


class TrainSection(_Section):
    """The loop.

    Fields:
        steps: RL steps.
        time_budget_s: stop early (cleanly, with a checkpoint) once this much wall time has passed.
        seed: seeds rollouts, sampling and the optimizer.
        out: the run folder.
        checkpoint_every: steps between checkpoints (the last step always checkpoints).
        keep_checkpoints: how many to keep.
        threads: torch CPU threads (0: torch's default).
        report_to: experiment trackers that also get the step records, the evaluation cells and
            the final learning curve (`palaestra.train.tracking`): `tensorboard` (into
            `out/tensorboard/`) and `wandb` (into `out/wandb/`); empty: none, only the JSONL
            records. Each needs its package (`pip install 'palaestra[tracking]'`). A string is
            read as a comma-separated list (`--set train.report_to=tensorboard,wandb`).
        wandb_project, wandb_entity: where the W&B run goes (entity: your default one).
        wandb_mode: `offline` (the default: the run stays in `out/wandb/` until `wandb sync`; nothing
            reaches the network) or `online` (logs to the W&B server as it trains; needs a login).
    """

    steps: int = Field(default=120, ge=0)
    time_budget_s: float | None = Field(default=None, gt=0)
    seed: int = 0
    out: str = "runs/train"
    checkpoint_every: int = Field(default=10, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    threads: int = Field(default=0, ge=0)
    report_to: list[str] = Field(default_factory=list)
    wandb_project: str = Field(default="palaestra", min_length=1)
    wandb_entity: str | None = None
    wandb_mode: Literal["offline", "online"] = "offline"

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in TRACKING_BACKENDS:
                known = ", ".join(TRACKING_BACKENDS)
                raise ValueError(f"train.report_to names {name!r}, which is no tracker; known: {known}")
        return list(dict.fromkeys(names))  # each tracker once, in the order given

    @model_validator(mode="after")
    def _wandb_options_need_wandb(self) -> TrainSection:
        # Told where W&B goes, but not to use it: likely a forgotten report_to entry.
        unused = sorted(
            name
            for name, field in type(self).model_fields.items()
            if name.startswith("wandb_") and getattr(self, name) != field.default
        )
        if unused and "wandb" not in self.report_to:
            raise ValueError(
                f"train.{unused[0]} is set but train.report_to does not name wandb; add it "
                '(report_to = ["wandb"]) or drop the option'
            )
        return self


class TrainConfig(_Section):
    """The whole configuration (sections as in the TOML file)."""

    model: ModelSection = Field(default_factory=ModelSection)
    sft: SFTSection = Field(default_factory=SFTSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    rewards: RewardConfig = Field(default_factory=RewardConfig)
    algorithm: AlgorithmSection = Field(default_factory=AlgorithmSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    train: TrainSection = Field(default_factory=TrainSection)

    @model_validator(mode="after")
    def _check_estimator(self) -> TrainConfig:
        from palaestra.train.advantages import ESTIMATORS

        if self.algorithm.estimator not in ESTIMATORS:
            known = ", ".join(sorted(ESTIMATORS))
            raise ValueError(f"algorithm.estimator {self.algorithm.estimator!r} is unknown; known: {known}")
        # Checked here, not at the first RL step: a typo would otherwise surface after the cold start.
        accepted = [
            name
            for name, parameter in inspect.signature(ESTIMATORS[self.algorithm.estimator]).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        unknown = sorted(set(self.algorithm.estimator_options) - set(accepted))
        if unknown:
            raise ValueError(
                f"algorithm.estimator_options: {self.algorithm.estimator} takes no option "
                f"{', '.join(map(repr, unknown))}; its options: {', '.join(accepted) or 'none'}"
            )
        try:  # an empty batch: the estimator checks its options' values and computes nothing
            ESTIMATORS[self.algorithm.estimator]([], **self.algorithm.estimator_options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"algorithm.estimator_options: {exc}") from None
        critic = self.algorithm.value_coef > 0
        if critic and self.algorithm.value_table:
            raise ValueError("algorithm.value_table and value_coef > 0 are two critics; choose one")
        if "gae_lambda" in self.algorithm.estimator_options and not (critic or self.algorithm.value_table):
            raise ValueError(
                "algorithm.estimator_options.gae_lambda needs a critic: set algorithm.value_coef > 0 "
                "or algorithm.value_table = true"
            )
        if self.algorithm.value_table and "gae_lambda" not in self.algorithm.estimator_options:
            raise ValueError(
                "algorithm.value_table: its values are read by mars's gae_lambda option; set "
                "algorithm.estimator_options.gae_lambda (1.0: each return against its position's value)"
            )
        if self.rollout.branch_states and self.algorithm.value_coef > 0:
            # A branch trajectory is cut after its chosen turn, so its later returns, which the
            # critic would regress onto, are gone.
            raise ValueError(
                "rollout.branch_states does not work with a critic (algorithm.value_coef > 0) yet"
            )
        return self

    @model_validator(mode="after")
    def _check_executor(self) -> TrainConfig:
        from palaestra.rollout.executors import parse_executor

        remote = parse_executor(self.rollout.executor) is not None
        if self.rollout.worker_engine != "hf" and not remote:
            raise ValueError(
                'rollout.worker_engine = "vllm" needs a Ray executor (rollout.executor = "ray...")'
            )
        if self.rollout.async_rollouts and not remote:
            raise ValueError('rollout.async_rollouts needs a Ray executor (rollout.executor = "ray...")')
        if self.rollout.league_legal_only and self.rollout.worker_engine == "vllm":
            raise ValueError(
                'rollout.league_legal_only needs the local engine; with worker_engine = "vllm" use '
                "rollout.league_legal_retries"
            )
        if remote and self.model.lora:
            raise ValueError("rollout.executor: Ray rollouts send full weights and do not support model.lora")
        return self

    @model_validator(mode="after")
    def _check_casts(self) -> TrainConfig:
        rollout, evaluation = self.rollout, self.eval
        for env_id in evaluation.casts:
            if env_id not in self.eval_envs:
                raise ValueError(f"eval.casts names {env_id!r}, which is not evaluated (eval.envs)")
        for where, casts, options in (
            ("rollout.casts", rollout.casts, rollout.env_options),
            ("eval.casts", evaluation.casts, self.eval_env_options),
        ):
            for env_id, cast in casts.items():
                try:
                    cast.check(_seats_of(env_id, options.get(env_id, {})))
                    for agent_spec in cast.fixed_agents():
                        check_agent_spec(agent_spec)
                except ValueError as exc:
                    raise ValueError(f"{where}[{env_id!r}]: {exc}") from None
        for env_id, specs in evaluation.opponents.items():
            for agent_spec in specs:
                try:
                    check_agent_spec(agent_spec)
                except ValueError as exc:
                    raise ValueError(f"eval.opponents[{env_id!r}]: {exc}") from None
        return self

    @property
    def eval_envs(self) -> list[str]:
        """The envs evaluated: `eval.envs`, or the training envs."""
        return list(self.eval.envs) if self.eval.envs is not None else list(self.rollout.envs)

    @property
    def eval_env_options(self) -> dict[str, dict[str, Any]]:
        """Every env's `make` options in evaluation (`eval.env_options` over `rollout.env_options`)."""
        return {**self.rollout.env_options, **self.eval.env_options}

    def held_out(self, env_id: str) -> bool:
        """Whether `env_id` is evaluated but never trained on."""
        return env_id not in self.rollout.envs


def _seats_of(env_id: str, options: dict[str, Any]) -> tuple[str, ...]:
    """The seat ids of `env_id` made with `options`."""
    from palaestra.core.registry import make

    env = make(env_id, **options)
    try:
        return tuple(env.players)
    finally:
        env.close()


def check_agent_spec(agent_spec: str) -> None:
    """AgentError (one line) for an agent spec that names no registered agent or whose options do
    not parse, without building any model: an `llm:` spec's model spec and options are parsed,
    not loaded (other agents' builders load nothing)."""
    from palaestra.agents.base import AgentError, agent_factory, parse_agent_spec, registered_agents

    name, rest = parse_agent_spec(agent_spec)
    known = registered_agents()
    if name not in known:
        raise AgentError(
            f"unknown agent {name!r} in {agent_spec!r}; known agents: {', '.join(sorted(known))}"
        )
    if name != "llm":
        agent_factory(agent_spec)
        return
    from palaestra.agents.llm import LLMAgent, check_llm_options, parse_llm_spec
    from palaestra.core.registries import parse_options
    from palaestra.models.registry import parse_model_spec

    if "?" not in rest and rest.startswith("model="):  # the keyword form, llm:model=tiny,temperature=0.6
        options = parse_options(rest, separator=",", where=repr(agent_spec), error=AgentError, typed=False)
        model = str(options.pop("model"))
        typed = check_llm_options(options, spec=agent_spec)
    else:
        model, typed = parse_llm_spec(rest)
    try:
        parse_model_spec(model)
    except ValueError as exc:
        raise AgentError(f"{agent_spec!r}: {exc}") from None
    LLMAgent(model, **typed)  # checks the template and memory options; the model loads on first use


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message is one line."""


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if not where or message.startswith((f"{where}.", f"{where}[", f"{where} ")):
        return message  # the message already names its key
    return f"{where}: {message}"


def parse_config(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Validate a config dict; `overrides` maps dotted keys (`train.steps`, or deeper into a
    table such as `algorithm.estimator_options.gae_lambda`) to values."""
    merged = copy.deepcopy(data)
    for dotted, value in (overrides or {}).items():
        parts = dotted.split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"override {dotted!r} must look like section.key")
        table = merged
        for depth, part in enumerate(parts[:-1]):
            inner = table.setdefault(part, {})
            if not isinstance(inner, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {dotted!r}: {where} is a value, not a table")
            table = inner
        table[parts[-1]] = value
    try:
        return TrainConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"bad training config: {_first_error(exc)}") from exc


def default_config_path() -> Path:
    """The shipped main-job config (the tiny model learns tic-tac-toe)."""
    from importlib.resources import files

    return Path(str(files("palaestra.train") / "configs" / "tic_tac_toe.toml"))


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a TOML training config."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no config file at {file}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from exc
    return parse_config(data, overrides)
