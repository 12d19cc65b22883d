"""Core contracts: messages, the registry, episode records, and check_env over every registered env."""

from __future__ import annotations

import random
import shutil
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import palaestra
from palaestra.core import (
    EnvCheckError,
    EnvError,
    Episode,
    Generation,
    InvalidAction,
    Message,
    TimeStep,
    ToolCall,
    Turn,
    check_env,
    make,
    register,
    registered,
)
from palaestra.envs.games.base import parse_answer


def test_message_needs_text_or_tool_calls() -> None:
    with pytest.raises(ValueError, match="neither"):
        Message(role="assistant")
    with pytest.raises(ValueError, match="role"):
        Message(role="robot", content="hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tool_call_id"):
        Message(role="tool", content="42")
    call = ToolCall(id="c1", name="lookup", arguments={"order": "A1"})
    assert Message(role="assistant", tool_calls=(call,)).tool_calls[0].name == "lookup"


@given(
    content=st.text(max_size=50),
    time=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    refs=st.lists(st.text(min_size=1, max_size=5), max_size=3),
)
def test_message_round_trips_through_dict(content: str, time: float | None, refs: list[str]) -> None:
    message = Message(role="user", content=content, name="env", time=time, id="m1", refs=tuple(refs))
    assert Message.from_dict(message.to_dict()) == message


def test_episode_record_round_trips_and_rejects_newer_versions() -> None:
    turn = Turn(
        step=0,
        player="player_0",
        observation=[Message(role="user", content="your move")],
        action=Message(role="assistant", tool_calls=(ToolCall(id="1", name="f", arguments={"x": 1}),)),
        legal_actions=["1", "2"],
        reward=0.5,
        generation=Generation(
            text="1", prompt_ids=[5, 6], token_ids=[7, 2], logprobs=[-0.1, -0.2], loss_mask=[1, 1]
        ),
    )
    episode = Episode(id="e1", env_id="tic_tac_toe-v0", seed=1, agents={"player_0": "x"}, turns=[turn])
    again = Episode.from_json(episode.to_json())
    assert again == episode
    assert again.turns[0].observation[0].content == "your move"
    newer = episode.model_dump(mode="json") | {"version": 99}
    with pytest.raises(ValueError, match="newer"):
        Episode.model_validate(newer)


def test_registry_errors_are_one_line() -> None:
    with pytest.raises(EnvError, match="unknown env 'nope-v0'"):
        make("nope-v0")
    with pytest.raises(EnvError, match="name-vN"):
        register("badid", "x:y")
    with pytest.raises(EnvError, match="already registered"):
        register("tic_tac_toe-v0", "x:y")
    with pytest.raises(EnvError, match="bad options"):
        make("tic_tac_toe-v0", no_such_option=1)
    with pytest.raises(EnvError, match="invalid_action"):
        make("tic_tac_toe-v0", invalid_action="shrug")


def test_make_applies_options_and_spec() -> None:
    env = make("tic_tac_toe-v0", invalid_action="retry", retries=3)
    assert env.spec.id == "tic_tac_toe-v0" and env.spec.version == 0
    assert env.retries == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5", "5"), ("<answer>Bet</answer>", "bet"), ("<think>x</think> <answer> 'call' </answer>", "call"),
     ("<answer>1</answer> then <answer>2</answer>", "2"), ("  fold.  ", "fold")],
)  # fmt: skip
def test_parse_answer(text: str, expected: str) -> None:
    assert parse_answer(text) == expected


REGISTERED = [s.id for s in registered()]
BROWSER_ENVS = {"web-v0", "weblinx-v0", "miniwob-v0"}
"""Envs that drive a real Chromium: checked where one is installed (`.ci/run` installs it)."""


@pytest.mark.parametrize("env_id", REGISTERED)
def test_every_registered_env_passes_check_env(env_id: str) -> None:
    if env_id in BROWSER_ENVS and shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    check_env(make(env_id), seeds=(0, 1))


def test_registry_has_the_mars_games() -> None:
    for env_id in ("tic_tac_toe-v0", "connect_four-v0", "kuhn_poker-v0", "leduc_poker-v0"):
        assert env_id in REGISTERED


class CoinFlipEnv:
    """A tiny valid env used to show check_env catches each kind of breakage."""

    def __init__(
        self,
        *,
        ignore_seed: bool = False,
        raise_on_junk: bool = False,
        refusals_in_info: bool = False,
        returns_off_by: float = 0.0,
        close_once_only: bool = False,
    ) -> None:
        self.spec = None
        self.players = ("player_0",)
        self.ignore_seed = ignore_seed
        self.raise_on_junk = raise_on_junk
        self.refusals_in_info = refusals_in_info
        self.returns_off_by = returns_off_by
        self.close_once_only = close_once_only
        self.rng = random.Random(0)
        self.left = 0
        self.won = 0.0
        self.closed = False

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> TimeStep:
        self.rng = random.Random(None if self.ignore_seed else seed)
        self.left = 3
        self.won = 0.0
        return TimeStep(
            to_act=("player_0",), observations={"player_0": [Message(role="user", content="flip")]}
        )

    def step(self, actions: Mapping[str, Any]) -> TimeStep:
        if self.left <= 0:
            raise ValueError("episode over")
        if set(actions) != {"player_0"}:
            raise ValueError("player_0 must act")
        if actions["player_0"] not in ("heads", "tails"):
            if self.raise_on_junk:
                raise KeyError(actions["player_0"])
            refused = InvalidAction("player_0", str(actions["player_0"])[:500], "not heads or tails", "retry")
            if self.refusals_in_info:
                return TimeStep(to_act=("player_0",), info={"invalid_action": refused.to_dict()})
            return TimeStep(to_act=("player_0",), invalid_actions=(refused,))
        self.left -= 1
        reward = float(self.rng.random() < 0.5)
        self.won += reward
        done = self.left == 0
        observation = [Message(role="user", content=f"got {reward}")]
        return TimeStep(
            to_act=() if done else ("player_0",),
            observations={"player_0": observation},
            rewards={"player_0": reward},
            terminated=done,
            info={"returns": {"player_0": self.won + self.returns_off_by}} if done else {},
        )

    def legal_actions(self, player: str) -> list[str]:
        return ["heads", "tails"] if self.left > 0 else []

    def render(self) -> str:
        return f"{self.left} flips left"

    def close(self) -> None:
        if self.closed and self.close_once_only:
            raise RuntimeError("already closed")
        self.closed = True


def test_check_env_accepts_a_good_env_and_catches_bad_ones() -> None:
    check_env(CoinFlipEnv())
    with pytest.raises(EnvCheckError, match="same seed, different episode"):
        check_env(CoinFlipEnv(ignore_seed=True))
    with pytest.raises(EnvCheckError, match="raised KeyError"):
        check_env(CoinFlipEnv(raise_on_junk=True))
    with pytest.raises(EnvCheckError, match=r"report refusals in TimeStep\.invalid_actions"):
        check_env(CoinFlipEnv(refusals_in_info=True))


def test_check_env_catches_rewards_that_do_not_add_up_to_the_returns() -> None:
    with pytest.raises(EnvCheckError, match=r"step rewards sum to .* but info\['returns'\] says"):
        check_env(CoinFlipEnv(returns_off_by=0.5))


def test_check_env_catches_a_close_that_fails_the_second_time() -> None:
    env = CoinFlipEnv(close_once_only=True)
    with pytest.raises(EnvCheckError, match=r"close\(\) raised RuntimeError the second time"):
        check_env(env)
    assert env.closed


def test_top_level_api() -> None:
    env = palaestra.make("tic_tac_toe-v0")
    step = env.reset(seed=0)
    assert step.to_act == ("player_0",)
    assert env.legal_actions("player_1") == []
    with pytest.raises(ValueError, match="expected an action for player_0"):
        env.step({"player_1": "1"})
