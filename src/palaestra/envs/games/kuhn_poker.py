"""Kuhn poker, native and text-first, with OpenSpiel's `kuhn_poker` rules, ids and returns.

Three cards J < Q < K (OpenSpiel card ids 0, 1, 2); each of two players antes 1 chip and gets one
card; one betting round with `pass` (id 0) and `bet` (id 1), both legal at every decision:
`pass` checks, or folds when facing a bet; `bet` bets 1 chip, or calls a bet. The game ends after
pass-pass, bet-pass, bet-bet, pass-bet-pass or pass-bet-bet; a return is the chips won or lost.

The deal is two chance outcomes (the card ids of player 0, then player 1), recorded first in
`history`, so `openspiel_state()` replays to the same `pyspiel` state. `reset(options={"deal":
[card_0, card_1]})` fixes the deal.
"""

from __future__ import annotations

import itertools
import numbers
import random
from collections.abc import Mapping
from typing import Any

from palaestra.core.registry import EnvError
from palaestra.envs.games.base import TextGame

CARD_NAMES: tuple[str, ...] = ("J", "Q", "K")
ACTIONS: tuple[str, ...] = ("pass", "bet")  # OpenSpiel ids 0 and 1
PASS, BET = 0, 1
ANTE = 1
_STATE_TEXTS: dict[tuple[Any, ...], str] = {}
_DEALS: tuple[tuple[int, int], ...] = tuple(itertools.permutations(range(3), 2))
"""Every ordered deal (card of player 0, card of player 1), equally likely."""


def chips(count: int) -> str:
    """`1 chip`, `3 chips`."""
    return f"{count} chip" if count == 1 else f"{count} chips"


def validate_deal(deal: Any, *, deck_size: int, lengths: tuple[int, ...], game: str) -> list[int]:
    """A fixed deal from reset options as a list of distinct card ids, or a one-line EnvError."""
    if isinstance(deal, str | bytes) or not hasattr(deal, "__len__"):
        raise EnvError(f"{game}: options['deal'] must be a list of card ids, got {deal!r}")
    cards: list[int] = []
    for card in deal:
        if isinstance(card, bool) or not isinstance(card, numbers.Integral) or not 0 <= int(card) < deck_size:
            raise EnvError(f"{game}: deal card ids must be integers 0-{deck_size - 1}, got {card!r}")
        cards.append(int(card))  # numpy integers become plain ints (history, hashing)
    if len(cards) not in lengths:
        wanted = " or ".join(str(n) for n in lengths)
        raise EnvError(f"{game}: options['deal'] needs {wanted} card ids, got {len(cards)}: {cards}")
    if len(set(cards)) != len(cards):
        raise EnvError(f"{game}: a card cannot be dealt twice, got deal {cards}")
    return cards


class KuhnPoker(TextGame):
    """Two-player Kuhn poker (OpenSpiel `kuhn_poker`)."""

    game_name = "Kuhn Poker"
    openspiel_name = "kuhn_poker"
    rules = (
        "Kuhn poker is played with three cards: J < Q < K. Each of the two players puts 1 chip "
        "in the pot (the ante) and is dealt one private card; the third card stays hidden and is "
        "not used. There is a single betting round and Player 0 acts first. Two actions are "
        "always legal: 'pass' and 'bet'. With no bet to face, 'pass' checks and 'bet' puts 1 more "
        "chip in. Facing a bet, 'bet' calls it (1 more chip) and 'pass' folds (you give up the "
        "pot and lose what you put in). The game ends when both players pass (showdown for a pot "
        "of 2: the higher card wins 1 chip), when a bet is called (showdown for a pot of 4: the "
        "higher card wins 2 chips), or when a player folds to a bet (the bettor wins 1 chip "
        "without showing). Your reward is the number of chips you win (positive) or lose "
        "(negative)."
    )

    def __init__(self, **policy: Any) -> None:
        super().__init__(**policy)
        self.cards: list[int] = [0, 1]
        self.bets: list[int] = []  # betting actions so far, OpenSpiel ids; player i % 2 made bets[i]
        self.contributions: list[int] = [ANTE, ANTE]
        self.winner = -1

    # ----- rules ------------------------------------------------------------------------------
    def _new_game(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        if options.get("deal") is not None:
            cards = validate_deal(options["deal"], deck_size=3, lengths=(2,), game="kuhn_poker")
        else:
            cards = list(_DEALS[int(rng.random() * len(_DEALS))])  # one draw: cheaper than sample()
        self.cards = cards
        self.bets = []
        self.contributions = [ANTE, ANTE]
        self.winner = -1
        self.history.extend(cards)

    def _current_player(self) -> int:
        return len(self.bets) % 2

    def _legal(self) -> list[str]:
        return list(ACTIONS)

    def _apply(self, action: str) -> None:
        action_id = BET if action == "bet" else PASS
        seat = len(self.bets) % 2
        self.bets.append(action_id)
        self.history.append(action_id)
        if action_id == BET:
            self.contributions[seat] += 1
        self.winner = self._winner_after_bets()

    def _winner_after_bets(self) -> int:
        """The winning seat once the betting sequence is final, else -1 (OpenSpiel's rule)."""
        bets = self.bets
        if BET not in bets:
            return -1 if len(bets) < 2 else self._higher_card_seat()
        first_bettor = bets.index(BET)
        if len(bets) < 2 + first_bettor:
            return -1  # the player after the bettor has not answered yet
        stayed_in = [seat for seat in (0, 1) if self.contributions[seat] > ANTE]
        if len(stayed_in) == 1:
            return stayed_in[0]
        return self._higher_card_seat()

    def _higher_card_seat(self) -> int:
        return 0 if self.cards[0] > self.cards[1] else 1

    def _is_over(self) -> bool:
        return self.winner >= 0

    def _returns(self) -> list[float]:
        loser = 1 - self.winner
        won = float(self.contributions[loser])
        return [won, -won] if self.winner == 0 else [-won, won]

    def _loss_value(self, seat: int) -> float:
        return float(self.contributions[seat])

    def _forfeit_returns(self, seat: int) -> list[float]:
        # Forfeiting is folding: the opponent takes the pot, so the offender loses its chips.
        lost = float(self.contributions[seat])
        return [-lost, lost] if seat == 0 else [lost, -lost]

    def action_for_id(self, action_id: int) -> str:
        if action_id not in (PASS, BET):
            raise ValueError(f"kuhn_poker: action id must be 0 (pass) or 1 (bet), got {action_id!r}")
        return ACTIONS[action_id]

    # ----- text -------------------------------------------------------------------------------
    def _player_info(self, seat: int) -> str:
        order = "first" if seat == 0 else "second"
        return (
            f"You are Player {seat} and act {order}. You have {chips(self.contributions[seat])} in "
            f"the pot; your card is {CARD_NAMES[self.cards[seat]]}."
        )

    def _betting_text(self) -> str:
        if not self.bets:
            return "none yet"
        words = []
        facing_bet = False
        for index, action_id in enumerate(self.bets):
            if action_id == BET:
                words.append(f"Player {index % 2} {'called' if facing_bet else 'bet'}")
                facing_bet = True
            else:
                words.append(f"Player {index % 2} {'folded' if facing_bet else 'checked'} (pass)")
        return ", ".join(words)

    def _state_text(self, seat: int) -> str:
        # The text is a pure function of the (small) state; Kuhn has a few dozen states, so each
        # text is built once per process.
        key = (seat, self.cards[0], self.cards[1], tuple(self.bets), self.winner)
        text = _STATE_TEXTS.get(key)
        if text is None:
            text = _STATE_TEXTS[key] = self._build_state_text(seat)
        return text

    def _build_state_text(self, seat: int) -> str:
        c0, c1 = self.contributions
        pot = c0 + c1
        if seat < 0:
            lines = [
                f"Cards: Player 0 has {CARD_NAMES[self.cards[0]]}, Player 1 has {CARD_NAMES[self.cards[1]]}.",
                f"Betting: {self._betting_text()}.",
                f"Pot: {pot} chips (Player 0 put in {c0}, Player 1 put in {c1}).",
            ]
            if self.winner >= 0:
                lines.append(self._result_text())
            return "\n".join(lines)
        mine, theirs = self.contributions[seat], self.contributions[1 - seat]
        lines = [
            f"You are Player {seat}. Your card: {CARD_NAMES[self.cards[seat]]}.",
            f"Betting so far: {self._betting_text()}.",
            f"Pot: {pot} chips (you put in {mine}, your opponent {theirs}).",
        ]
        if self.winner < 0 and self._current_player() == seat:
            if theirs > mine:
                lines.append("You face a bet: 'bet' calls it (1 more chip), 'pass' folds.")
            else:
                lines.append("No bet to face: 'pass' checks, 'bet' bets 1 chip.")
        return "\n".join(lines)

    def _result_text(self) -> str:
        winner, loser = self.winner, 1 - self.winner
        if len(self.bets) >= 2 and self.contributions[0] == self.contributions[1]:
            how = f"at showdown ({CARD_NAMES[self.cards[winner]]} beats {CARD_NAMES[self.cards[loser]]})"
        else:
            how = f"because Player {loser} folded"
        return f"Result: Player {winner} wins {chips(self.contributions[loser])} {how}."

    # ----- snapshot ---------------------------------------------------------------------------
    def _get_state(self) -> Any:
        return (tuple(self.cards), tuple(self.bets), tuple(self.contributions), self.winner)

    def _set_state(self, state: Any) -> None:
        cards, bets, contributions, self.winner = state
        self.cards, self.bets, self.contributions = list(cards), list(bets), list(contributions)
