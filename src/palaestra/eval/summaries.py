"""Family-specific run summaries (pass^k, society metrics, ...) shared by the CLI and reports.

A run's episodes are the source of truth. After `palaestra run` prints its per-seat table (on the
env's scorecard: `palaestra.eval.scorecards`), it asks every registered provider for extra
sections; `palaestra report` embeds the same sections in HTML. A provider is a function
`(episodes: list[Episode]) -> list[SummarySection]` that returns `[]` when the run is not of its
family. Providers are registered by their `module:function` names (`register_provider`) and
imported lazily, in registration order (the order of the sections); a provider's module may define
`applies_to(env_id: str) -> bool` so that runs of other families are never read for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from palaestra.core.records import Episode
from palaestra.core.registries import Registry, load_target

SummaryProvider = Callable[[Sequence[Episode]], "list[SummarySection]"]


@dataclass(frozen=True)
class SummarySection:
    """One table (and optionally curves) summarizing a run.

    Fields:
        title: a heading, e.g. "pass^k by domain".
        columns: column names.
        rows: one list of already formatted cells per row (same length as `columns`).
        curves: optional named step curves for a plot, each a list of (x, y) points (for example
            Kaplan-Meier survival curves: x the round, y the share of runs still alive).
        x_label, y_label: axis labels for `curves`.
        note: one line under the table (formulas, exclusions, counts of infrastructure errors).
    """

    title: str
    columns: list[str]
    rows: list[list[str]]
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    x_label: str = ""
    y_label: str = ""
    note: str = ""


PROVIDERS: Registry[SummaryProvider] = Registry("summary provider")
"""Provider functions, each registered under its `module:function` name; iterating gives the
names in registration order. Add yours with `register_provider`."""


def register_provider(target: str) -> None:
    """Add a provider (`module:function`) consulted by `summarize_run`, after those before it."""
    if target not in PROVIDERS:
        PROVIDERS.register(target, target)


for _builtin in (
    "palaestra.eval.service_metrics:summarize",
    "palaestra.eval.society:summarize",
    "palaestra.eval.scorecards:summarize",  # the env's own scorecard sections (a cooperative team table)
    "palaestra.eval.teams:summarize",
    "palaestra.eval.safety:summarize",
    "palaestra.eval.workspace:summarize",
    "palaestra.eval.web:summarize",
    "palaestra.eval.procgen:summarize",
):
    register_provider(_builtin)


def _load(target: str) -> SummaryProvider | None:
    try:
        provider: SummaryProvider = load_target(target)
    except ModuleNotFoundError as exc:
        if exc.name == target.partition(":")[0]:  # a provider not installed in this build: nothing to add
            return None
        raise
    return provider


def providers_for(env_id: str) -> list[SummaryProvider]:
    """The providers whose module says it applies to `env_id` (or does not say)."""
    chosen: list[SummaryProvider] = []
    for target in PROVIDERS:  # names, in registration order (any iterable of targets will do)
        provider = _load(target)
        if provider is None:
            continue
        applies = getattr(importlib.import_module(target.partition(":")[0]), "applies_to", None)
        if applies is None or applies(env_id):
            chosen.append(provider)
    return chosen


def summarize_run(env_id: str, episodes: Sequence[Episode]) -> list[SummarySection]:
    """Every applicable provider's sections for these episodes, in provider order."""
    sections: list[SummarySection] = []
    for provider in providers_for(env_id):
        sections.extend(provider(episodes))
    return sections
