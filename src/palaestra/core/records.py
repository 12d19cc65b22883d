"""Episode records: what a finished episode leaves on disk, one JSON line each.

The record keeps everything downstream needs without re-deriving it: who sat where, what each
player saw and did, the reward each turn earned, the exact tokens a model sampled (with their
log-probs and the loss mask), and how the episode ended. `SCHEMA_VERSION` changes whenever a
field changes meaning; readers refuse versions they do not know.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from palaestra.core.messages import Message

SCHEMA_VERSION = 1

Status = Literal["ok", "error", "timeout"]


class Generation(BaseModel):
    """One model call behind one turn, token-exact.

    Fields:
        text: the decoded completion.
        prompt_ids: the token ids fed to the model in this call that it had not seen before in
            this conversation (the template-rendered delta of new messages). The first call's
            delta is the whole rendered prompt.
        token_ids: the exact sampled ids, end-of-turn token included when one was sampled.
        logprobs: the sampling log-prob of each id in `token_ids` (same length), when known.
        loss_mask: 1 for ids that were sampled by the model (trainable), 0 for ids that were
            forced (e.g. a template's end-of-turn marker the model did not sample); same length
            as `token_ids`. Prompt ids always have mask 0 and are not listed.
        session_turn: how many earlier calls the same model session had (0: the context starts
            with this call's `prompt_ids`; k > 0: it continues the previous call's context). Lets a
            trainer rebuild each model context token-exactly: a new row starts at every 0.
        finish_reason: `stop` | `length` | `error`.
        model: the engine and model that produced it.
        timings: seconds by phase (`queue`, `prefill`, `decode`, `total`).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_ids: list[int] = Field(default_factory=list)
    token_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] | None = None
    loss_mask: list[int] | None = None
    session_turn: int | None = None
    finish_reason: str = "stop"
    model: str = ""
    timings: dict[str, float] = Field(default_factory=dict)


class Turn(BaseModel):
    """One action of one player.

    Fields:
        step: the env step this action was part of (several players share a step when moves are
            simultaneous).
        player: who acted.
        observation: the new messages the player was shown before acting.
        action: what the agent answered (text, or a message with tool calls).
        legal_actions: the legal action strings offered, when the env lists them.
        invalid: the env's verdict when the action was refused (an `InvalidAction` dict).
        reward: the reward this player earned from this action until its next one (its share of
            every step's rewards in between), so per-player turn rewards need no re-derivation.
        latency_s: how long the agent took.
        generation: the model call behind the action, for model-backed agents.
    """

    step: int
    player: str
    observation: list[Message] = Field(default_factory=list)
    action: str | Message
    legal_actions: list[str] | None = None
    invalid: dict[str, str] | None = None
    reward: float = 0.0
    latency_s: float = 0.0
    generation: Generation | None = None

    @field_validator("observation", mode="before")
    @classmethod
    def _messages_in(cls, value: Any) -> Any:
        return [Message.from_dict(m) if isinstance(m, dict) else m for m in value]

    @field_validator("action", mode="before")
    @classmethod
    def _action_in(cls, value: Any) -> Any:
        return Message.from_dict(value) if isinstance(value, dict) else value

    @field_serializer("observation")
    def _messages_out(self, value: list[Message]) -> list[dict[str, Any]]:
        return [m.to_dict() for m in value]

    @field_serializer("action")
    def _action_out(self, value: str | Message) -> str | dict[str, Any]:
        return value.to_dict() if isinstance(value, Message) else value


class Episode(BaseModel):
    """A finished episode: one line of `episodes.jsonl`.

    Fields:
        version: the record schema version (`SCHEMA_VERSION`).
        id: unique within a run; reruns skip ids already written.
        env_id: the registry id the env was made from.
        env_options: the options it was made with (so the run can be rebuilt).
        seed: the reset seed.
        agents: per player, the agent spec that sat there.
        turns: every action in order.
        returns: per player, the total reward of the episode.
        status: `ok`, `error` (something raised) or `timeout`.
        cause: for `error`/`timeout`, what happened, in one line.
        terminated, truncated: how the env ended it (both false when the episode did not finish).
        num_steps: env steps taken.
        started_at: Unix time the episode started.
        duration_s: wall-clock seconds it took.
        info: the env's final info (winner, final state text, ...).
        weight_version: for episodes played by a policy under training, the version of its
            weights (the number of updates they had had) when the episode started; None
            otherwise. Lets a trainer whose rollouts run beside its updates drop stale ones.
    """

    version: int = SCHEMA_VERSION
    id: str
    env_id: str
    env_options: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    agents: dict[str, str]
    turns: list[Turn] = Field(default_factory=list)
    returns: dict[str, float] = Field(default_factory=dict)
    status: Status = "ok"
    cause: str | None = None
    terminated: bool = False
    truncated: bool = False
    num_steps: int = 0
    started_at: float = 0.0
    duration_s: float = 0.0
    info: dict[str, Any] = Field(default_factory=dict)
    weight_version: int | None = None

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(
                f"episode schema version {value} is newer than this palaestra knows "
                f"({SCHEMA_VERSION}); upgrade palaestra to read it"
            )
        return value

    def player_turns(self, player: str) -> list[Turn]:
        """The turns of one player, in order: that player's trajectory."""
        return [turn for turn in self.turns if turn.player == player]

    def to_json(self) -> str:
        """One line of JSON, no trailing newline."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, line: str | bytes) -> Episode:
        return cls.model_validate_json(line)


_set_attribute = object.__setattr__
RecordT = TypeVar("RecordT", bound=BaseModel)


def trusted(cls: type[RecordT], values: dict[str, Any]) -> RecordT:
    """`cls.model_construct(**values)` for hot paths that build every field themselves.

    `values` must hold every field of `cls`, in declaration order; it becomes the record's
    `__dict__` as it is (no validation, no defaults, no copy). The record equals what
    `model_construct` returns, fields set included, at a quarter of the cost: rollouts build a
    `Turn` and a `Generation` per model call.
    """
    record = cls.__new__(cls)
    _set_attribute(record, "__dict__", values)
    _set_attribute(record, "__pydantic_fields_set__", set(values))
    _set_attribute(record, "__pydantic_extra__", None)
    _set_attribute(record, "__pydantic_private__", None)
    return record
