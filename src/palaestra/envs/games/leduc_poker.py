"""Leduc hold'em, native and text-first, with OpenSpiel's `leduc_poker` rules, ids and returns.

Six cards, two each of J, Q, K (OpenSpiel card ids 0-5: J J Q Q K K, so the rank is `id // 2`);
each of two players antes 1 chip and gets one private card. Round 1 is a betting round, then one
public card is dealt, then round 2 and a showdown. Actions are `fold` (id 0), `call` (id 1; a
check when nothing is owed) and `raise` (id 2; by 2 chips in round 1 and 4 in round 2, at most 2
raises per round). As in OpenSpiel, `fold` is legal only when facing a raise, and player 0 acts
first in both rounds. At showdown a private card that pairs the public card wins, otherwise the
higher card wins; equal hands split the pot. A return is the chips won or lost.

Chance outcomes (player 0's card, player 1's card, and, once round 1 ends, the public card) are
recorded in `history` where OpenSpiel applies them, so `openspiel_state()` replays to the same
`pyspiel` state. `reset(options={"deal": [card_0, card_1, public]})` fixes the deal (the public
card may be left out: it is then drawn with the seeded generator).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from palaestra.envs.games.base import TextGame
from palaestra.envs.games.kuhn_poker import chips, validate_deal

RANK_NAMES: tuple[str, ...] = ("J", "Q", "K")
ACTIONS: tuple[str, ...] = ("fold", "call", "raise")  # OpenSpiel ids 0, 1, 2
FOLD, CALL, RAISE = 0, 1, 2
ANTE = 1
RAISE_SIZES: tuple[int, int] = (2, 4)  # by round
MAX_RAISES_PER_ROUND = 2
DECK_SIZE = 6
_DEALS: tuple[tuple[int, int, int], ...] = tuple(itertools.permutations(range(DECK_SIZE), 3))
"""Every ordered deal (private 0, private 1, public), equally likely."""


def card_name(card: int) -> str:
    return RANK_NAMES[card // 2]


def hand_rank(private: int, public: int) -> int:
    """OpenSpiel's hand strength: any pair beats every unpaired hand, then high card, then low."""
    low, high = sorted((private, public))
    if low % 2 == 0 and high == low + 1:
        return DECK_SIZE * DECK_SIZE + low
    return (high // 2) * DECK_SIZE + low // 2


class LeducPoker(TextGame):
    """Two-player Leduc hold'em (OpenSpiel `leduc_poker`, default parameters)."""

    game_name = "Leduc Hold'em"
    openspiel_name = "leduc_poker"
    rules = (
        "Leduc hold'em is played with six cards: two each of J, Q and K (J < Q < K; suits do not "
        "matter). Each of the two players puts 1 chip in the pot (the ante) and is dealt one "
        "private card. There are two betting rounds; after round 1 one public card is dealt face "
        "up, shared by both players. Player 0 acts first in each round. Actions: 'call' puts in "
        "the chips needed to match your opponent (a check when you owe nothing); 'raise' matches "
        "and then adds 2 more chips in round 1 or 4 more chips in round 2 (at most 2 raises per "
        "round, counting both players); 'fold' gives up the pot and is only allowed when you face "
        "a raise. A round ends when both players have checked or when a raise is called. If "
        "someone folds, the other player wins the pot. After round 2 comes the showdown: a player "
        "whose private card has the same rank as the public card (a pair) wins; otherwise the "
        "higher private card wins; equal ranks split the pot. Your reward is the number of chips "
        "you win (positive) or lose (negative)."
    )

    def __init__(self, **policy: Any) -> None:
        super().__init__(**policy)
        self.private_cards: list[int] = [0, 1]
        self.public_card = 2  # drawn at reset, revealed (and put in `history`) when round 2 starts
        self.round = 1
        self.stakes = ANTE  # what each player must have put in to stay in
        self.num_raises = 0
        self.num_calls = 0
        self.contributions: list[int] = [ANTE, ANTE]
        self.sequences: tuple[list[int], list[int]] = ([], [])
        self.to_move = 0
        self.folded = -1
        self.finished = False

    # ----- rules ------------------------------------------------------------------------------
    def _new_game(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        if options.get("deal") is not None:
            deal = validate_deal(options["deal"], deck_size=DECK_SIZE, lengths=(2, 3), game="leduc_poker")
            if len(deal) == 2:
                deal.append(rng.choice([c for c in range(DECK_SIZE) if c not in deal]))
        else:
            deal = list(_DEALS[int(rng.random() * len(_DEALS))])  # one draw: cheaper than sample()
        self.private_cards = deal[:2]
        self.public_card = deal[2]
        self.round = 1
        self.stakes = ANTE
        self.num_raises = 0
        self.num_calls = 0
        self.contributions = [ANTE, ANTE]
        self.sequences = ([], [])
        self.to_move = 0
        self.folded = -1
        self.finished = False
        # OpenSpiel's chance outcome id is the card's index in its deck, which is the card id.
        self.history.extend(deal[:2])

    def _current_player(self) -> int:
        return self.to_move

    def _legal(self) -> list[str]:
        if self.stakes > self.contributions[self.to_move]:
            return ["fold", "call", "raise"] if self.num_raises < MAX_RAISES_PER_ROUND else ["fold", "call"]
        return ["call", "raise"] if self.num_raises < MAX_RAISES_PER_ROUND else ["call"]

    def _apply(self, action: str) -> None:
        seat = self.to_move
        action_id = ACTIONS.index(action)
        self.history.append(action_id)
        self.sequences[self.round - 1].append(action_id)
        if action_id == FOLD:
            self.folded = seat
            self.finished = True
            return
        self.contributions[seat] = self.stakes  # call, or the matching part of a raise
        if action_id == RAISE:
            self.stakes += RAISE_SIZES[self.round - 1]
            self.contributions[seat] = self.stakes
            self.num_raises += 1
            self.num_calls = 0
            self.to_move = 1 - seat
            return
        self.num_calls += 1
        round_over = self.num_calls == 2 if self.num_raises == 0 else self.num_calls == 1
        if not round_over:
            self.to_move = 1 - seat
        elif self.round == 2:
            self.finished = True
        else:
            self.round = 2
            self.num_raises = 0
            self.num_calls = 0
            self.to_move = 0
            self.history.append(self.public_card)

    def _is_over(self) -> bool:
        return self.finished

    def _winner(self) -> int:
        """The seat that takes the pot, or -1 for a split pot."""
        if self.folded >= 0:
            return 1 - self.folded
        rank_0 = hand_rank(self.private_cards[0], self.public_card)
        rank_1 = hand_rank(self.private_cards[1], self.public_card)
        if rank_0 == rank_1:
            return -1
        return 0 if rank_0 > rank_1 else 1

    def _returns(self) -> list[float]:
        winner = self._winner()
        if winner < 0:
            return [0.0, 0.0]  # the pot is split and both put in the same
        won = float(self.contributions[1 - winner])
        return [won, -won] if winner == 0 else [-won, won]

    def _loss_value(self, seat: int) -> float:
        return float(self.contributions[seat])

    def _forfeit_returns(self, seat: int) -> list[float]:
        # Forfeiting is folding: the opponent takes the pot, so the offender loses its chips.
        lost = float(self.contributions[seat])
        return [-lost, lost] if seat == 0 else [lost, -lost]

    def action_for_id(self, action_id: int) -> str:
        if action_id not in (FOLD, CALL, RAISE):
            raise ValueError(
                f"leduc_poker: action id must be 0 (fold), 1 (call) or 2 (raise), got {action_id!r}"
            )
        return ACTIONS[action_id]

    # ----- text -------------------------------------------------------------------------------
    def _player_info(self, seat: int) -> str:
        order = "first" if seat == 0 else "second"
        return (
            f"You are Player {seat} and act {order} in each betting round. You have "
            f"{chips(self.contributions[seat])} in the pot; your private card is "
            f"{card_name(self.private_cards[seat])}."
        )

    def _sequence_text(self, round_index: int) -> str:
        sequence = self.sequences[round_index]
        if not sequence:
            return "none yet" if round_index == self.round - 1 and not self.finished else "none"
        words = []
        facing_raise = False
        for index, action_id in enumerate(sequence):
            player = index % 2  # player 0 opens both rounds and the players alternate
            if action_id == RAISE:
                words.append(f"Player {player} raised")
                facing_raise = True
            elif action_id == CALL:
                words.append(f"Player {player} {'called' if facing_raise else 'checked'}")
                facing_raise = False
            else:
                words.append(f"Player {player} folded")
        return ", ".join(words)

    def _public_text(self) -> str:
        return card_name(self.public_card) if self.round == 2 else "not dealt yet"

    def _state_text(self, seat: int) -> str:
        c0, c1 = self.contributions
        if seat < 0:
            lines = [
                f"Round {self.round} of 2.",
                f"Private cards: Player 0 has {card_name(self.private_cards[0])}, "
                f"Player 1 has {card_name(self.private_cards[1])}. Public card: {self._public_text()}.",
                f"Round 1 betting: {self._sequence_text(0)}.",
            ]
            if self.round == 2:
                lines.append(f"Round 2 betting: {self._sequence_text(1)}.")
            lines.append(f"Pot: {c0 + c1} chips (Player 0 put in {c0}, Player 1 put in {c1}).")
            if self.finished:
                lines.append(self._result_text())
            return "\n".join(lines)
        mine, theirs = self.contributions[seat], self.contributions[1 - seat]
        lines = [
            f"Round {self.round} of 2. You are Player {seat}.",
            f"Your card: {card_name(self.private_cards[seat])}. Public card: {self._public_text()}.",
            f"Round 1 betting: {self._sequence_text(0)}.",
        ]
        if self.round == 2:
            lines.append(f"Round 2 betting: {self._sequence_text(1)}.")
        lines.append(f"Pot: {c0 + c1} chips (you put in {mine}, your opponent {theirs}).")
        if not self.finished and self.to_move == seat:
            lines.append(self._choices_text(mine, theirs))
        return "\n".join(lines)

    def _choices_text(self, mine: int, theirs: int) -> str:
        size = RAISE_SIZES[self.round - 1]
        owed = theirs - mine
        raises_left = MAX_RAISES_PER_ROUND - self.num_raises
        if raises_left:
            raise_text = f"'raise' puts in {chips(owed + size)} ({raises_left} of 2 raises left this round)"
        else:
            raise_text = "no raises left this round"
        if owed:
            return f"You owe {chips(owed)}: 'call' puts them in, {raise_text}, 'fold' gives up the pot."
        return f"You owe nothing: 'call' checks, {raise_text}."

    def _result_text(self) -> str:
        winner = self._winner()
        if self.folded >= 0:
            won = chips(self.contributions[self.folded])
            return f"Result: Player {winner} wins {won} because Player {self.folded} folded."
        public = card_name(self.public_card)
        names = [card_name(card) for card in self.private_cards]
        if winner < 0:
            return f"Result: showdown, both hold {names[0]} with public {public}; the pot is split."
        loser = 1 - winner
        if self.private_cards[winner] // 2 == self.public_card // 2:
            why = f"a pair of {public}s beats {names[loser]}"
        else:
            why = f"{names[winner]} beats {names[loser]} with public {public}"
        return f"Result: Player {winner} wins {chips(self.contributions[loser])} at showdown ({why})."

    # ----- snapshot ---------------------------------------------------------------------------
    def _get_state(self) -> Any:
        return (
            tuple(self.private_cards),
            self.public_card,
            self.round,
            self.stakes,
            self.num_raises,
            self.num_calls,
            tuple(self.contributions),
            (tuple(self.sequences[0]), tuple(self.sequences[1])),
            self.to_move,
            self.folded,
            self.finished,
        )

    def _set_state(self, state: Any) -> None:
        (
            private_cards,
            self.public_card,
            self.round,
            self.stakes,
            self.num_raises,
            self.num_calls,
            contributions,
            sequences,
            self.to_move,
            self.folded,
            self.finished,
        ) = state
        self.private_cards = list(private_cards)
        self.contributions = list(contributions)
        self.sequences = (list(sequences[0]), list(sequences[1]))
