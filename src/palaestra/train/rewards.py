"""Turn rewards and training trajectories, from finished episodes.

MARS rewards each turn of a player (docs/references.md §1): the game's own reward (win +1, loss −1,
poker chips; the env folds the MARS invalid-action penalty, −1−10 or −chips−10, into the
offender's return), **+0.05 for every valid action** and **+0.1 for a draw**. The env already
credits its rewards to the `Turn` that earned them (`Turn.reward`: terminal returns land on each
player's last turn), so a player's turn rewards are

    r_k = game_scale · turn_k.reward
          + valid_action                   if turn k was accepted (turn_k.invalid is None)
          + invalid_action                 if turn k was refused (extra, default 0)
          + draw                           on the last turn, if the episode ended in a draw

A draw is an episode that finished (`status == "ok"`, `terminated`) with two or more players whose
returns are all equal, in an env that is not cooperative (in Hanabi every player always gets the
same score, so "all equal" says nothing about a draw; see `RewardConfig.cooperative_envs` and
`cooperative_families`).

`trajectories_from_episodes` turns episodes into `Trajectory` records, one per model-backed
player per episode: its turn rewards and the exact tokens of each turn; the trainer keeps only the
learner's seats (`players=is_policy`: the seats its cast labels `policy`), so league snapshots and
fixed agents (a scripted customer, a solver) never train. Pure Python, no torch.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from palaestra.core.records import Episode, Generation
from palaestra.core.registry import EnvError, spec

GroupKey = tuple[str, int | str]
"""Same-seed group of a trajectory: `(env_id, seed)`, or `(env_id, "episode:<id>")` when unseeded."""


class RewardConfig(BaseModel):
    """How a player's turn rewards are built from an episode (defaults: MARS).

    Fields:
        game_scale: multiplies the env's own per-turn reward (win/loss, chips, and the MARS
            invalid-action penalty the env already put into the offender's return).
        draw: added to a player's last turn when the episode ended in a draw.
        use_draw_bonus: False turns the draw bonus off.
        valid_action: added to every turn the env accepted (`Turn.invalid is None`).
        use_valid_action_bonus: False turns the valid-action bonus off.
        invalid_action: added to every turn the env refused, on top of the env's own penalty.
            0 by default because an env with the MARS policy already charges −1−10; use a
            negative value with `invalid_action="retry"` envs, which charge nothing for a retry.
        cooperative_envs: glob patterns of env ids whose games are cooperative (all players
            share one score), which therefore never end in a draw (Hanabi; the service envs,
            where a failed task leaves every seat at 0, which is no draw either).
        cooperative_families: env families (`EnvSpec.family`) whose episodes never end in a
            draw, whatever their ids (`service`: every domain, `shop-v0` and generated ones too;
            the team worlds, whose members share one outcome; the safety sandbox, the workspace,
            the web and the procedural worlds, where the other seats simulate a user or a world).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    game_scale: float = Field(default=1.0, allow_inf_nan=False)
    draw: float = Field(default=0.1, allow_inf_nan=False)
    use_draw_bonus: bool = True
    valid_action: float = Field(default=0.05, allow_inf_nan=False)
    use_valid_action_bonus: bool = True
    invalid_action: float = Field(default=0.0, allow_inf_nan=False)
    cooperative_envs: tuple[str, ...] = ("*hanabi*", "retail-v0", "travel-v0", "crm-v0", "service:*")
    cooperative_families: tuple[str, ...] = ("service", "teams", "safety", "workspace", "web", "procgen")


def is_draw(episode: Episode, config: RewardConfig | None = None) -> bool:
    """Whether the episode finished as a draw: ok, terminated, ≥2 players, all returns equal,
    and not a cooperative env (where equal returns are the rule, not a draw)."""
    config = config or RewardConfig()
    if episode.status != "ok" or not episode.terminated or len(episode.returns) < 2:
        return False
    if any(fnmatch.fnmatchcase(episode.env_id, pattern) for pattern in config.cooperative_envs):
        return False
    if config.cooperative_families and _family(episode.env_id) in config.cooperative_families:
        return False
    values = list(episode.returns.values())
    return all(math.isclose(value, values[0], rel_tol=0.0, abs_tol=1e-9) for value in values)


@functools.lru_cache(maxsize=1024)
def _family(env_id: str) -> str:
    """The env's family (`EnvSpec.family`), "" for ids nobody registered."""
    try:
        return spec(env_id).family
    except EnvError:
        return ""


def turn_rewards(episode: Episode, player: str, config: RewardConfig | None = None) -> list[float]:
    """The reward of each turn of `player`, in order (see the module docstring for the formula)."""
    config = config or RewardConfig()
    turns = episode.player_turns(player)
    rewards = []
    for turn in turns:
        reward = config.game_scale * turn.reward
        if turn.invalid is None:
            if config.use_valid_action_bonus:
                reward += config.valid_action
        else:
            reward += config.invalid_action
        rewards.append(reward)
    if rewards and config.use_draw_bonus and is_draw(episode, config):
        rewards[-1] += config.draw
    return rewards


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A trajectory's turns laid end to end: the model's whole context, token-exact.

    Fields (all the same length, one entry per token):
        input_ids: for each turn, its prompt delta then its sampled ids.
        loss_mask: 1 on ids the model sampled, 0 on prompt ids and forced ids.
        turn_index: the turn each token belongs to (prompt ids of turn k count as turn k).
        rollout_logprobs: the sampling log-prob of each token, aligned with the token itself
            (predicted from the tokens before it), 0.0 on prompt ids; None when any turn
            lacks log-probs.
    """

    input_ids: list[int]
    loss_mask: list[int]
    turn_index: list[int]
    rollout_logprobs: list[float] | None

    def per_token(self, per_turn: Sequence[float]) -> list[float]:
        """Spread one value per turn (e.g. advantages) onto every token of that turn."""
        return [float(per_turn[k]) for k in self.turn_index]


@dataclass(frozen=True, slots=True)
class Trajectory:
    """One player's side of one episode, ready for an advantage estimator and the loss.

    Fields:
        game: the env id the episode ran in.
        role: the seat (player id) this trajectory played.
        turn_rewards: one reward per turn, in order (`turn_rewards(...)`).
        group: the same-seed group key `(env_id, seed)` that GRPO-style baselines compare within.
        episode_id: the episode it came from.
        final_return: the env's return for this player (no shaping), the episode's outcome.
        prompt_ids, token_ids, loss_mask: per turn, from `Turn.generation` (a missing loss mask
            means every sampled id is trainable).
        logprobs: per turn, the sampling log-probs of `token_ids` (None for a turn without them).
        context_starts: per turn, whether the model's context began afresh at that turn
            (`Generation.session_turn == 0`), e.g. agents that see only the latest state. Empty
            means one context for the whole trajectory.
        values: per turn, a critic's estimate V(s_k) of the return from turn k on, when the
            trainer has a critic (`algorithm.value_coef > 0`); empty otherwise. Estimators that
            bootstrap from it (`mars` with `gae_lambda`) read it.
    """

    game: str
    role: str
    turn_rewards: list[float]
    group: GroupKey = ("", "")
    episode_id: str = ""
    final_return: float | None = None
    prompt_ids: list[list[int]] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    logprobs: list[list[float] | None] = field(default_factory=list)
    loss_mask: list[list[int]] = field(default_factory=list)
    context_starts: list[bool] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def outcome(self) -> float:
        """The trajectory's total reward: the sum of its (shaped) turn rewards."""
        return float(sum(self.turn_rewards))

    @property
    def num_turns(self) -> int:
        return len(self.turn_rewards)

    @property
    def num_trainable_tokens(self) -> int:
        return sum(sum(mask) for mask in self.loss_mask)

    def head(self, turns: int) -> Trajectory:
        """The trajectory's first `turns` turns only. A trajectory that trains only those loses
        nothing: in a causal model later tokens cannot change the log-probs of earlier ones."""

        def first(values: list[Any]) -> list[Any]:
            return values[:turns]

        return dataclasses.replace(
            self,
            turn_rewards=first(self.turn_rewards),
            prompt_ids=first(self.prompt_ids),
            token_ids=first(self.token_ids),
            logprobs=first(self.logprobs),
            loss_mask=first(self.loss_mask),
            context_starts=first(self.context_starts),
            values=first(self.values),
        )

    def token_rows(self) -> list[TokenRow]:
        """One row per model context: the turns of each context laid end to end.

        A trajectory whose agent kept one conversation gives one row; one whose agent started a
        fresh context every turn gives one row per turn. `turn_index` still counts the
        trajectory's turns, so per-turn advantages spread the same way.
        """
        starts = [
            k for k in range(self.num_turns) if k == 0 or (self.context_starts and self.context_starts[k])
        ]
        bounds = [*starts, self.num_turns]
        return [self.token_row(bounds[i], bounds[i + 1]) for i in range(len(starts))]

    def token_row(self, first: int = 0, stop: int | None = None) -> TokenRow:
        """Turns `first` to `stop` (default: all) concatenated into one training row (`TokenRow`)."""
        input_ids: list[int] = []
        loss_mask: list[int] = []
        turn_index: list[int] = []
        logprobs: list[float] | None = []
        last = len(self.prompt_ids) if stop is None else stop
        for k in range(first, last):
            prompt, tokens, mask = self.prompt_ids[k], self.token_ids[k], self.loss_mask[k]
            input_ids += prompt
            input_ids += tokens
            loss_mask += [0] * len(prompt)
            loss_mask += mask
            turn_index += [k] * (len(prompt) + len(tokens))
            turn_logprobs = self.logprobs[k] if k < len(self.logprobs) else None
            if logprobs is not None and turn_logprobs is not None:
                logprobs += [0.0] * len(prompt)
                logprobs += turn_logprobs
            else:
                logprobs = None
        return TokenRow(input_ids, loss_mask, turn_index, logprobs)


@dataclass(slots=True)
class TrajectoryBatch:
    """What `trajectories_from_episodes` found.

    Fields:
        trajectories: one per model-backed player per usable episode, in episode then seat order.
        num_episodes: episodes read.
        skipped_episodes: episodes left out, counted by status (`error`, `timeout`).
        skipped_players: players left out because only some of their turns had a generation
            (their token context would have holes).
    """

    trajectories: list[Trajectory] = field(default_factory=list)
    num_episodes: int = 0
    skipped_episodes: Counter[str] = field(default_factory=Counter)
    skipped_players: int = 0

    def __len__(self) -> int:
        return len(self.trajectories)

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.trajectories)


PlayerFilter = Collection[str] | Callable[[Episode, str], bool] | None
"""Which players to keep: None (every model-backed one), a set of player ids, or a predicate."""


def _group_key(episode: Episode) -> GroupKey:
    if episode.seed is None:
        # An unseeded episode shares its start with no other, so it is a group of its own.
        return (episode.env_id, f"episode:{episode.id}")
    return (episode.env_id, episode.seed)


def _turn_tokens(generation: Generation, where: str) -> tuple[list[int], list[float] | None, list[int]]:
    tokens = list(generation.token_ids)
    mask = [1] * len(tokens) if generation.loss_mask is None else list(generation.loss_mask)
    logprobs = None if generation.logprobs is None else list(generation.logprobs)
    if len(mask) != len(tokens):
        raise ValueError(f"{where}: loss_mask has {len(mask)} entries for {len(tokens)} token ids")
    if logprobs is not None and len(logprobs) != len(tokens):
        raise ValueError(f"{where}: logprobs has {len(logprobs)} entries for {len(tokens)} token ids")
    return tokens, logprobs, mask


def _wanted(players: PlayerFilter, episode: Episode, player: str) -> bool:
    if players is None:
        return True
    if callable(players):
        return bool(players(episode, player))
    if isinstance(players, str):  # one id, not a collection of its characters
        return player == players
    return player in players


def trajectories_from_episodes(
    episodes: Iterable[Episode],
    *,
    players: PlayerFilter = None,
    config: RewardConfig | None = None,
) -> TrajectoryBatch:
    """One `Trajectory` per model-backed player of every ok episode.

    A player is model-backed when every one of its turns carries a `Generation`; players with
    no generation at all (scripted, solver, human seats) are left out silently, players with
    only some are left out and counted. Episodes whose status is not `ok` are skipped and
    counted by status: their returns are not a game's verdict.
    """
    config = config or RewardConfig()
    batch = TrajectoryBatch()
    for episode in episodes:
        batch.num_episodes += 1
        if episode.status != "ok":
            batch.skipped_episodes[episode.status] += 1
            continue
        seats = list(episode.agents) or list(dict.fromkeys(turn.player for turn in episode.turns))
        for player in seats:
            if not _wanted(players, episode, player):
                continue
            turns = episode.player_turns(player)
            with_generation = sum(turn.generation is not None for turn in turns)
            if with_generation == 0:
                continue
            if with_generation < len(turns):
                batch.skipped_players += 1
                continue
            prompt_ids, token_ids, logprobs, loss_mask = [], [], [], []
            context_starts: list[bool] = []
            for k, turn in enumerate(turns):
                assert turn.generation is not None
                where = f"episode {episode.id}, {player}, turn {k}"
                tokens, turn_logprobs, mask = _turn_tokens(turn.generation, where)
                context_starts.append(k == 0 or turn.generation.session_turn == 0)
                prompt_ids.append(list(turn.generation.prompt_ids))
                token_ids.append(tokens)
                logprobs.append(turn_logprobs)
                loss_mask.append(mask)
            batch.trajectories.append(
                Trajectory(
                    game=episode.env_id,
                    role=player,
                    turn_rewards=turn_rewards(episode, player, config),
                    group=_group_key(episode),
                    episode_id=episode.id,
                    final_return=float(episode.returns.get(player, 0.0)),
                    prompt_ids=prompt_ids,
                    token_ids=token_ids,
                    logprobs=logprobs,
                    loss_mask=loss_mask,
                    context_starts=context_starts,
                )
            )
    return batch
