"""The human agent: shows the new messages and numbered legal actions, takes an action or its
number, re-asks on bad input with one line, quits on `quit`/EOF, and never blocks the event loop."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

import palaestra
from palaestra.agents import AgentView, agent_factory
from palaestra.agents.human import HumanAgent, HumanQuit, choose_action
from palaestra.agents.scripted import FirstLegalAgent
from palaestra.core.messages import Message
from palaestra.rollout.episode import play_episode


class ScriptedInput:
    """Stands in for `input`: answers from a list, records the prompts, EOF when it runs out."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


def human(lines: Sequence[str]) -> tuple[HumanAgent, ScriptedInput, io.StringIO]:
    typed = ScriptedInput(lines)
    output = io.StringIO()
    console = Console(file=output, width=100, force_terminal=False, color_system=None)
    return HumanAgent(input_fn=typed, console=console), typed, output


def make_view(legal: Sequence[str] | None, messages: Sequence[Message] = ()) -> AgentView:
    return AgentView(
        player="player_0",
        messages=tuple(messages),
        legal_actions=legal,
        turn=0,
        step=0,
        episode_id="e",
        seed=0,
    )


def act(agent: HumanAgent, view: AgentView) -> str:
    return str(asyncio.run(agent.act(view)))


def test_takes_the_action_text_ignoring_case() -> None:
    agent, typed, _ = human(["  BET "])
    assert act(agent, make_view(["pass", "bet"])) == "bet"
    assert typed.prompts == ["player_0> "]


def test_takes_the_number_of_an_action() -> None:
    agent, _, output = human(["2"])
    assert act(agent, make_view(["pass", "bet"])) == "bet"
    assert "1) pass" in output.getvalue() and "2) bet" in output.getvalue()


def test_numeric_actions_mean_themselves_and_hash_picks_by_position() -> None:
    legal = ["2", "5", "9"]  # tic-tac-toe cells
    assert act(human(["5"])[0], make_view(legal)) == "5"
    assert act(human(["#1"])[0], make_view(legal)) == "2"
    agent, typed, output = human(["1", "9"])  # "1" is neither a legal cell nor "#1"
    assert act(agent, make_view(legal)) == "9"
    assert len(typed.prompts) == 2
    assert "#1) 2" in output.getvalue() and "#N" in output.getvalue()


def test_bad_input_is_refused_in_one_line_and_asked_again() -> None:
    agent, typed, output = human(["raise", "", "7", "pass"])
    assert act(agent, make_view(["pass", "bet"])) == "pass"
    assert len(typed.prompts) == 4
    refusals = [line for line in output.getvalue().splitlines() if "not a legal action" in line]
    assert len(refusals) == 2  # "raise" and "7"; the blank line gets a gentler hint
    assert "'raise' is not a legal action; type one of: pass, bet (or 1-2)" in refusals[0]


@pytest.mark.parametrize("lines", [["quit"], ["nonsense", "EXIT"], []])
def test_quit_or_end_of_input_stops(lines: list[str]) -> None:
    agent, _, _ = human(lines)
    with pytest.raises(HumanQuit):
        act(agent, make_view(["pass", "bet"]))


def test_a_legal_action_named_quit_is_played_not_obeyed() -> None:
    assert act(human(["quit"])[0], make_view(["stay", "quit"])) == "quit"


def test_free_form_envs_take_any_line() -> None:
    agent, _, _ = human(["", "hello there"])
    assert act(agent, make_view(None)) == "hello there"


def test_shows_every_new_message_without_markup_surprises() -> None:
    messages = [
        Message(role="system", content="You are playing [bold]Kuhn[/bold].", name="env"),
        Message(role="user", content="GAME STATE:\nyour card is K", name="env"),
    ]
    agent, _, output = human(["pass"])
    act(agent, make_view(["pass", "bet"], messages))
    text = output.getvalue()
    assert "[bold]Kuhn[/bold]" in text  # printed literally, not interpreted as rich markup
    assert "your card is K" in text and "player_0 · turn 1" in text


def test_reading_input_does_not_block_the_event_loop() -> None:
    """While the person has not answered, other coroutines (other seats, episodes) keep running."""
    other_ran = threading.Event()

    def slow_input(prompt: str) -> str:
        # Answers only after the event loop ran the other coroutine; a blocked loop never would.
        return "bet" if other_ran.wait(timeout=5) else "pass"

    async def scenario() -> str:
        agent = HumanAgent(input_fn=slow_input, console=Console(file=io.StringIO()))

        async def other() -> None:
            await asyncio.sleep(0.01)
            other_ran.set()

        action, _ = await asyncio.gather(agent.act(make_view(["pass", "bet"])), other())
        return str(action)

    assert asyncio.run(scenario()) == "bet"


def test_plays_a_whole_episode_and_quitting_stops_the_run() -> None:
    env = palaestra.make("tic_tac_toe-v0")
    specs = {"player_0": "human", "player_1": "first"}

    def run(lines: Sequence[str]) -> object:
        agent, _, _ = human(lines)
        return asyncio.run(
            play_episode(
                env,
                {"player_0": agent, "player_1": FirstLegalAgent()},
                episode_id="h",
                seed=0,
                env_id="tic_tac_toe-v0",
                agent_specs=specs,
            )
        )

    # X takes 5, 4, 6 (the first-legal O takes 1, 2): a row through the middle.
    episode = run(["5", "#3", "6"])
    assert episode.status == "ok"  # type: ignore[attr-defined]
    assert episode.returns == {"player_0": 1.0, "player_1": -1.0}  # type: ignore[attr-defined]
    with pytest.raises(HumanQuit):
        run(["5", "quit"])


def test_registered_as_human() -> None:
    factory: Callable[[], object] = agent_factory("human")
    assert isinstance(factory(), HumanAgent)


_ACTION = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)


@given(st.lists(_ACTION, min_size=1, max_size=9, unique_by=str.lower), st.data())
def test_choose_action_properties(legal: list[str], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(legal) - 1))
    assert choose_action(legal[index], legal) == legal[index]
    assert choose_action(legal[index].upper(), legal) == legal[index]
    assert choose_action(f"#{index + 1}", legal) == legal[index]
    assert choose_action(f"#{len(legal) + 1}", legal) is None
    typed = data.draw(st.text(max_size=12))
    chosen = choose_action(typed, legal)
    assert chosen is None or chosen in legal
