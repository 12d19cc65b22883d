"""`textworld:CHALLENGE`: TextWorld games (Côté et al., 2018; the `textworld` package) generated at reset.

At every reset, the challenge's own generator (`textworld.challenges`) makes a game from the seed
and the settings, TextWorld compiles it (its bundled Inform 7 tools) into a temporary folder kept
for the life of the process (one file per challenge, settings and seed, so replays and resets of
the same seed reuse it), and `textworld.start` plays it. Challenges and their options:

- `coin_collector?level=1..300`: find the coin (rooms and distractors grow with the level);
- `treasure_hunter?level=1..30`: find and take the named object (locked doors from level 11);
- `simple?rewards=dense|balanced|sparse&goal=detailed|brief|none`: a short quest in a house;
- `cooking?recipe=1..5&take=0..5&go=1|6|9|12&open=true&cook=true&cut=true`: the First TextWorld
  Problems kitchen.

Each turn shows TextWorld's feedback text (the objective first), and the legal actions are its
admissible commands. The reward is the change of the game's score divided by its maximum, so a
won game returns 1 (success). Options: `max_turns` (default 50), `retries`. The solver plays the
first of TextWorld's `policy_commands` (the walkthrough from the current state); the idle action
is `look`. Snapshots keep the seed and the commands played (the game is deterministic): restoring
replays them. Needs `pip install 'palaestra[textworld]'`; generation takes a few seconds a game.
"""

from __future__ import annotations

import hashlib
import random
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from palaestra.core.env import PlayerId
from palaestra.core.registry import EnvError
from palaestra.envs.procgen.base import MAX_ANSWER_CHARS, ProcgenEnv, whole_option

CHALLENGES = {
    "coin_collector": "tw-coin_collector",
    "treasure_hunter": "tw-treasure_hunter",
    "simple": "tw-simple",
    "cooking": "tw-cooking",
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "coin_collector": {"level": 1},
    "treasure_hunter": {"level": 1},
    "simple": {"rewards": "dense", "goal": "detailed", "test": False},
    "cooking": {
        "recipe": 1,
        "take": 1,
        "go": 1,
        "open": False,
        "cook": False,
        "cut": False,
        "drop": False,
        "recipe_seed": 0,
        "split": None,
    },
}
_WORD = re.compile(r"[A-Za-z]{2}")


def clean(text: str) -> str:
    """TextWorld's feedback without its ASCII-art banner and its `>` status line, blank runs folded."""
    kept = [
        line.rstrip()
        for line in text.splitlines()
        if _WORD.search(line) and not line.lstrip().startswith(">")
    ]
    return "\n".join(kept).strip()


_FOLDER: tempfile.TemporaryDirectory[str] | None = None
_GAMES: dict[str, str] = {}


def _textworld() -> Any:
    try:
        import textworld
        import textworld.challenges
    except ImportError as exc:
        raise EnvError("textworld: needs the textworld package: pip install 'palaestra[textworld]'") from exc
    return textworld


def game_file(challenge: str, settings: Mapping[str, Any], seed: int) -> str:
    """The compiled game of `challenge` with `settings` from `seed` (generated on first use)."""
    global _FOLDER
    key = hashlib.sha256(repr((challenge, sorted(settings.items()), seed)).encode()).hexdigest()[:16]
    if key in _GAMES and Path(_GAMES[key]).is_file():
        return _GAMES[key]
    textworld = _textworld()
    if _FOLDER is None:
        _FOLDER = tempfile.TemporaryDirectory(prefix="palaestra-textworld-")
    options = textworld.GameOptions()
    options.seeds = seed
    options.path = str(Path(_FOLDER.name) / f"{challenge}-{key}.z8")
    options.file_ext = ".z8"
    _, make, _ = textworld.challenges.CHALLENGES[CHALLENGES[challenge]]
    try:
        game = make(dict(settings), options)
        path = textworld.generator.compile_game(game, options)
    except Exception as exc:  # TextWorld raises its own errors for settings it cannot build
        raise EnvError(
            f"textworld:{challenge}: could not generate a game ({type(exc).__name__}: {exc})"
        ) from exc
    _GAMES[key] = str(path)
    return str(path)


class TextWorldGame(ProcgenEnv):
    """One TextWorld game per episode (see the module docstring)."""

    game = "textworld"
    title = "a TextWorld text adventure"
    idle_action = "look"

    def __init__(
        self,
        *,
        challenge: str = "coin_collector",
        max_turns: int = 50,
        retries: int = 1,
        max_answer_chars: int = MAX_ANSWER_CHARS,
        **settings: Any,
    ) -> None:
        if challenge not in CHALLENGES:
            raise EnvError(f"textworld: unknown challenge {challenge!r}; challenges: {', '.join(CHALLENGES)}")
        unknown = sorted(set(settings) - set(DEFAULTS[challenge]))
        if unknown:
            raise EnvError(
                f"textworld:{challenge}: no option {unknown[0]!r}; "
                f"its options: {', '.join(DEFAULTS[challenge])}, max_turns"
            )
        super().__init__(num_players=1, retries=retries, max_answer_chars=max_answer_chars)
        _textworld()
        self.challenge = challenge
        self.settings = {**DEFAULTS[challenge], **settings}
        self.max_turns = whole_option("max_turns", max_turns, 1)
        self.seed = 0
        self.commands: list[str] = []
        self.score = 0.0
        self.won = self.lost = False
        self._cache_game: Any = None
        self._cache_infos: Any = None

    def _start(self) -> None:
        textworld = _textworld()
        if self._cache_game is not None:
            self._cache_game.close()
        requested = textworld.EnvInfos(
            admissible_commands=True,
            policy_commands=True,
            won=True,
            lost=True,
            max_score=True,
            score=True,
            objective=True,
        )
        self._cache_game = textworld.start(
            game_file(self.challenge, self.settings, self.seed), request_infos=requested
        )
        self._cache_infos = self._cache_game.reset()
        self.feedback = clean(self._cache_infos.feedback or "")

    def _setup(self, rng: random.Random, options: Mapping[str, Any]) -> None:
        self.seed = rng.randrange(2**31 - 1)
        self.commands, self.score, self.won, self.lost = [], 0.0, False, False
        self._start()
        self.max_score = float(self._cache_infos["max_score"] or 1)
        self.world = (self.seed, tuple(self.commands))

    def _rules(self) -> str:
        return (
            f"A TextWorld text adventure ({self.challenge}). Each turn, type one of the admissible commands. "
            "Your score counts the quest's steps done; the game is won when the quest is done. "
            f"At most {self.max_turns} turns."
        )

    def _player_info(self, player: PlayerId) -> str:
        return "You are the only player (player_0)."

    def _legal(self, player: PlayerId) -> list[str]:
        commands = list(dict.fromkeys(self._cache_infos["admissible_commands"] or []))
        return commands or [self.idle_action]

    def _apply(self, actions: dict[PlayerId, str]) -> None:
        command = actions["player_0"]
        infos, score, _ = self._cache_game.step(command)
        self._cache_infos = infos
        self.commands.append(command)
        self.world = (self.seed, tuple(self.commands))
        self.feedback = clean(infos.feedback or "")
        gained = float(score) - self.score
        self.score = float(score)
        if gained:
            self._reward("player_0", gained / self.max_score)
        self.won, self.lost = bool(infos["won"]), bool(infos["lost"])

    def _over(self) -> tuple[bool, bool]:
        if self.won or self.lost:
            return True, False
        return False, len(self.commands) >= self.max_turns

    def _turn_view(self, player: PlayerId) -> tuple[str, dict[str, Any]]:
        lines = [
            f"Turn {len(self.commands) + 1} of {self.max_turns}. Score {self.score:g} of {self.max_score:g}."
        ]
        objective = str(self._cache_infos["objective"] or "")
        if not self.commands and objective and objective not in self.feedback:
            lines.append(f"Objective: {objective}")
        lines.append(self.feedback)
        return "\n".join(line for line in lines if line), {"feedback": self.feedback, "score": self.score}

    def _final_info(self) -> dict[str, Any]:
        return {
            "procgen": {
                "world": f"textworld:{self.challenge}",
                "success": self.won,
                "score": self.score,
                "max_score": self.max_score,
                "turns": len(self.commands),
            }
        }

    def _render(self) -> str:
        score = f"{self.score:g}/{self.max_score:g}"
        return f"{self.challenge} (seed {self.seed}); score {score}; commands: {self.commands}"

    def solver_action(self, player: PlayerId) -> str:
        policy = self._cache_infos["policy_commands"] if self._cache_infos is not None else None
        return policy[0] if policy else self.idle_action

    def close(self) -> None:
        if self._cache_game is not None:
            self._cache_game.close()
            self._cache_game = None

    # Snapshots are the seed and the commands: TextWorld's interpreter state is not copyable.
    def restore(self, snapshot: Any) -> None:
        super().restore(snapshot)  # the seed, the commands and the texts shown
        feedback = self.feedback
        self._start()
        for command in self.commands:
            self._cache_infos, _, _ = self._cache_game.step(command)
        self.feedback = feedback


__all__ = ["CHALLENGES", "TextWorldGame", "game_file"]
