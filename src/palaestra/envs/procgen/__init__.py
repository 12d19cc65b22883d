"""Procedural worlds: skill probes with oracles, an open-ended task universe, crafting with many agents.

Every world here is generated from its seed and options, so a curriculum can raise a difficulty
knob or the horizon while training (`palaestra.train.curriculum`), and every one has a solver or an
upper bound so that its tasks validate (`palaestra validate lumina:grid`, `palaestra validate xland`).

Ids (docs/procgen.md has the options):

- `lumina:list|tree|grid[?size=N&depth=D&oracle=plan|state|history]`: LUMINA-style skill probes
  (`palaestra.envs.procgen.lumina`), one seat; the oracle takes over planning, state tracking or
  history so the limiting skill shows.
- `xland_text-v0` (and `xland:FAMILY[?...]`): a text world of objects, rules and goals composed from a
  grammar, one to four players, cooperative or competitive, graded by `difficulty`, held-out task
  families for transfer (`palaestra.envs.procgen.xland`).
- `crafter:TASK[?...]`: the real Crafter (the `crafter` package) as text for one agent; TASK is an
  achievement to unlock (`collect_wood`, `place_table`, ...) or `all` (the scorecard counts the
  achievements) (`palaestra.envs.procgen.crafter_text`).
- `craft_together-v0`: a native multi-agent crafting world with shared, depleting resources, trades
  and structured messages (DAMCS) (`palaestra.envs.procgen.crafting`).
- `wildfire-v0`: an ecological resource task in HIVEX's spirit: crews with a shared water budget
  contain a spreading fire (`palaestra.envs.procgen.ecology`).
- `textworld:CHALLENGE[?...]`: TextWorld games (the `textworld` package) generated into a temporary
  folder at reset: `coin_collector`, `treasure_hunter`, `simple`, `cooking`
  (`palaestra.envs.procgen.textworld_env`).

The family is scored by success (`procgen` scorecard kind, `palaestra.eval.procgen`): success per
oracle intervention, Crafter achievements, and a per-family transfer table.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from palaestra.core.casts import register_family_cast
from palaestra.core.registries import parse_options, split_spec
from palaestra.core.registry import EnvError, EnvSpec, register, register_prefix
from palaestra.core.scorecards import Scorecard, register_family_scorecard
from palaestra.core.validation import register_validator

FAMILY = "procgen"
SCORECARD = Scorecard("procgen", headline="success")
"""Success (a return of 1) of every seat; the kind's sections come from `palaestra.eval.procgen`."""
register_family_scorecard(FAMILY, SCORECARD)
# Training and evaluation default to the policy in every seat (alone in one-seat worlds, a team of
# itself in cooperative ones, its own opponent in competitive ones); casts can seat others.
register_family_cast(FAMILY, {"learner": "any", "others": ["self"]})

LUMINA_WORLDS = ("list", "tree", "grid")
XLAND_ID = "xland_text-v0"


def split_procgen_id(prefix: str, rest: str, example: str) -> tuple[str, dict[str, Any]]:
    """`NAME?key=value&key=value` to the name and its parsed options."""
    name, query = split_spec(rest, "?")
    if not name:
        raise EnvError(f"{prefix}: needs a name after the colon, e.g. {example}")
    return name, parse_options(query, where=f"{prefix}:{rest}", error=EnvError)


@lru_cache(maxsize=512)
def _lumina_spec(rest: str) -> EnvSpec:
    world, options = split_procgen_id("lumina", rest, "lumina:grid?size=4&depth=2")
    if world not in LUMINA_WORLDS:
        raise EnvError(f"lumina: unknown world {world!r}; worlds: {', '.join(LUMINA_WORLDS)}")
    return EnvSpec(
        id=f"lumina:{rest}",
        entry_point="palaestra.envs.procgen.lumina:LuminaEnv",
        kwargs={"world": world, **options},
        num_players=1,
        family=FAMILY,
        description=f"LUMINA-style {world} world",
        scorecard=SCORECARD,
    )


@lru_cache(maxsize=512)
def _xland_spec(rest: str) -> EnvSpec:
    family, options = split_procgen_id("xland", rest, "xland:fetch?difficulty=2")
    players = options.get("players", 1)
    return EnvSpec(
        id=f"xland:{rest}",
        entry_point="palaestra.envs.procgen.xland:XLandText",
        kwargs={"family": family, **options},
        num_players=players if isinstance(players, int) else 1,
        family=FAMILY,
        description=f"XLand-style text task, family {family}",
        scorecard=SCORECARD,
    )


@lru_cache(maxsize=256)
def _crafter_spec(rest: str) -> EnvSpec:
    task, options = split_procgen_id("crafter", rest, "crafter:collect_wood")
    return EnvSpec(
        id=f"crafter:{rest}",
        entry_point="palaestra.envs.procgen.crafter_text:CrafterText",
        kwargs={"task": task, **options},
        num_players=1,
        family=FAMILY,
        description=f"Crafter as text, task {task}",
        scorecard=SCORECARD,
    )


@lru_cache(maxsize=256)
def _textworld_spec(rest: str) -> EnvSpec:
    challenge, options = split_procgen_id("textworld", rest, "textworld:coin_collector?level=2")
    return EnvSpec(
        id=f"textworld:{rest}",
        entry_point="palaestra.envs.procgen.textworld_env:TextWorldGame",
        kwargs={"challenge": challenge, **options},
        num_players=1,
        family=FAMILY,
        description=f"TextWorld {challenge} game",
        scorecard=SCORECARD,
    )


register_prefix(
    "lumina",
    _lumina_spec,
    "LUMINA-style skill probes: lumina:<list|tree|grid>[?size=N&depth=D&oracle=plan|state|history] "
    "(one seat; success; docs/procgen.md)",
)
register_prefix(
    "xland",
    _xland_spec,
    "XLand-style text tasks of one family: xland:<FAMILY|train|test|any>[?difficulty=1..5&players=N] "
    "(docs/procgen.md)",
)
register_prefix(
    "crafter",
    _crafter_spec,
    "Crafter as text (one agent): crafter:<ACHIEVEMENT|all>[?length=N&area=N] "
    "(needs pip install 'palaestra[procgen]')",
)
register_prefix(
    "textworld",
    _textworld_spec,
    "TextWorld games generated at reset: textworld:<coin_collector|treasure_hunter|simple|cooking>[?level=N] "
    "(needs pip install 'palaestra[textworld]')",
)
register(
    XLAND_ID,
    "palaestra.envs.procgen.xland:XLandText",
    num_players=1,
    family=FAMILY,
    scorecard=SCORECARD,
    description="Open-ended text task universe (XLand-style): objects, rules, goals from a grammar; "
    "family=, difficulty=, players=; held-out families for transfer.",
)
register(
    "craft_together-v0",
    "palaestra.envs.procgen.crafting:CraftTogether",
    num_players=2,
    kind="simultaneous",
    family=FAMILY,
    scorecard=SCORECARD,
    description="Multi-agent crafting (DAMCS): shared depleting resources, trades, structured "
    "messages; the team crafts the goal item.",
)
register(
    "wildfire-v0",
    "palaestra.envs.procgen.ecology:Wildfire",
    num_players=3,
    kind="simultaneous",
    family=FAMILY,
    scorecard=SCORECARD,
    description="Ecological task (HIVEX-style): crews with a shared water budget contain a spreading "
    "wildfire; share of forest saved.",
)

register_validator(
    "lumina",
    "palaestra.envs.procgen.validation:validate_lumina",
    "LUMINA-style worlds: lumina[:list|tree|grid]; the solver scores 1.0, doing nothing fails",
)
register_validator(
    "xland",
    "palaestra.envs.procgen.validation:validate_xland",
    "XLand-style tasks: xland[:FAMILY|train|test]; the solver team reaches every goal, doing nothing fails",
)
register_validator(
    "procgen",
    "palaestra.envs.procgen.validation:validate_procgen",
    "every procedural world: lumina, xland, craft_together, wildfire (and crafter when installed)",
)

__all__ = ["FAMILY", "LUMINA_WORLDS", "SCORECARD", "XLAND_ID", "split_procgen_id"]
