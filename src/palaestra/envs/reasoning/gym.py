"""reasoning-gym datasets as task sources: `reasoning:NAME?difficulty=D&KEY=VALUE...`.

reasoning-gym (the optional `reasoning` extra: `pip install 'palaestra[reasoning]'`) is a library
of procedural generators, each with its own verifier. A dataset is built with
`reasoning_gym.create_dataset(NAME, seed=S, size=N, **config)`; item i is a dict with `question`,
`answer` and `metadata`, dealt from the dataset's seed plus i, and `dataset.score_answer(answer,
entry)` scores an answer in [0, 1] (partial credit where the dataset gives it).

- `difficulty=D` (1 = easiest) sets every attribute of the dataset's curriculum to level D-1
  (`create_curriculum(NAME).set_global_level(D - 1)`, then `generate_configuration`); other options
  are fields of the dataset's config class (`min_terms`, `max_digits`, ...) and win over the
  curriculum's. Unknown fields are an error naming the known ones.
- Splits by seed range: train item i comes from seed i, test item i from `GYM_TEST_OFFSET + i`.
  Datasets are built in blocks of `BLOCK` items (a few are generated whole at construction) and
  the last few blocks are kept.
- The solver is the dataset's own answer (reasoning-gym generates the answer with the question);
  `normalize` strips the text (the dataset's scorer does its own reading); distractors are the
  gold answer shifted by one when it is an integer, else a fixed wrong string.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

from palaestra.core.registry import EnvError
from palaestra.envs.reasoning.generators import read_integer
from palaestra.envs.reasoning.tasks import Task, check_seed, check_split

INSTALL_HINT = "pip install 'palaestra[reasoning]'"
GYM_TEST_OFFSET = 1_000_000_000
BLOCK = 500


def import_reasoning_gym() -> Any:
    """The `reasoning_gym` module, or a one-line EnvError saying how to install it."""
    try:
        return importlib.import_module("reasoning_gym")
    except ImportError as exc:
        raise EnvError(f"reasoning-gym is not installed ({exc}); install it with: {INSTALL_HINT}") from exc


def gym_names() -> list[str]:
    """Every dataset reasoning-gym registers (empty when it is not installed)."""
    try:
        factory = importlib.import_module("reasoning_gym.factory")
    except ImportError:
        return []
    return sorted(factory.DATASETS)


def _config_fields(name: str) -> list[str]:
    factory = importlib.import_module("reasoning_gym.factory")
    _, config_class = factory.DATASETS[name]
    return [f.name for f in dataclasses.fields(config_class)]


def gym_config(name: str, difficulty: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """The config fields of dataset `name` for a difficulty and explicit options (seed and size left out)."""
    import_reasoning_gym()
    factory = importlib.import_module("reasoning_gym.factory")
    if name not in factory.DATASETS:
        known = ", ".join(sorted(factory.DATASETS)[:12])
        raise EnvError(
            f"reasoning: no generator or reasoning-gym dataset {name!r}; some datasets: {known}, ..."
        )
    fields = _config_fields(name)
    unknown = sorted(set(options) - set(fields) - {"seed", "size"})
    if unknown or "seed" in options or "size" in options:
        bad = unknown or [key for key in ("seed", "size") if key in options]
        settable = ", ".join(f for f in fields if f not in ("seed", "size"))
        raise EnvError(f"reasoning:{name}: no option {', '.join(map(repr, bad))}; its options: {settable}")
    config: dict[str, Any] = {}
    if difficulty is not None:
        if not isinstance(difficulty, int) or isinstance(difficulty, bool) or difficulty < 1:
            raise EnvError(f"reasoning:{name}: difficulty must be a whole number >= 1, got {difficulty!r}")
        if name not in factory.CURRICULA:
            raise EnvError(
                f"reasoning:{name}: this dataset has no curriculum, so no difficulty; set its options"
            )
        curriculum = factory.create_curriculum(name)
        curriculum.set_global_level(difficulty - 1)
        generated = curriculum.generate_configuration({"seed": 0, "size": BLOCK})
        config = {f: getattr(generated, f) for f in fields if f not in ("seed", "size")}
    return {**config, **options}


@functools.lru_cache(maxsize=16)
def _dataset(name: str, config_items: tuple[tuple[str, Any], ...], start: int) -> Any:
    gym = import_reasoning_gym()
    try:
        return gym.create_dataset(name, seed=start, size=BLOCK, **dict(config_items))
    except (AssertionError, TypeError, ValueError) as exc:
        raise EnvError(f"reasoning:{name}: bad options ({exc})") from exc


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class GymSource:
    """A `TaskSource` over one reasoning-gym dataset and configuration."""

    def __init__(
        self, name: str, difficulty: int | None = None, options: dict[str, Any] | None = None
    ) -> None:
        self.name = name
        self.difficulty = difficulty
        self.config = gym_config(name, difficulty, dict(options or {}))
        self._config_items = tuple(sorted((k, _frozen(v)) for k, v in self.config.items()))
        shown = "&".join(f"{k}={v}" for k, v in sorted((options or {}).items()))
        level = f"difficulty={difficulty}" if difficulty is not None else ""
        query = "&".join(part for part in (level, shown) if part)
        self.label = f"{name}?{query}" if query else name

    def entry(self, split: str, seed: int) -> dict[str, Any]:
        """The dataset item for (split, seed)."""
        split, seed = check_split(split), check_seed(seed)
        index = seed + (GYM_TEST_OFFSET if split == "test" else 0)
        start = index - index % BLOCK
        return dict(_dataset(self.name, self._config_items, start)[index - start])

    def task(self, split: str, seed: int) -> Task:
        entry = self.entry(split, seed)
        level = f"d{self.difficulty}" if self.difficulty is not None else "d-"
        return Task(
            id=f"{self.name}/{level}/{split}/{seed}",
            source=self.name,
            split=split,
            seed=seed,
            difficulty=self.difficulty,
            question=str(entry["question"]),
            answer=str(entry["answer"]),
            data={"entry": entry},
        )

    def _scorer(self, task: Task) -> Any:
        start = task.seed + (GYM_TEST_OFFSET if task.split == "test" else 0)
        return _dataset(self.name, self._config_items, start - start % BLOCK)

    def score(self, task: Task, answer: str | None) -> float:
        if answer is None or not answer.strip():
            return 0.0
        try:
            value = float(self._scorer(task).score_answer(answer=answer, entry=dict(task.data["entry"])))
        except Exception:  # noqa: BLE001 - a scorer tripping over a strange answer scores it 0, never crashes
            return 0.0
        return min(max(value, 0.0), 1.0)

    def solve(self, task: Task) -> str:
        return str(task.data["entry"]["answer"])

    def normalize(self, task: Task, text: str) -> str | None:
        stripped = text.strip()
        return stripped or None

    def distractors(self, task: Task, count: int) -> list[str]:
        number = read_integer(task.answer)
        if number is not None:
            return [str(int(number) + 1 + k) for k in range(count)]
        return [f"none{k}" if k else "none" for k in range(count)]


__all__ = [
    "BLOCK",
    "GYM_TEST_OFFSET",
    "INSTALL_HINT",
    "GymSource",
    "gym_config",
    "gym_names",
    "import_reasoning_gym",
]
