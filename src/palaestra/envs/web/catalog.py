"""Every site task, in a fixed order: the shop's, the forum's, the wiki's, the admin panel's."""

from __future__ import annotations

from functools import lru_cache

from palaestra.envs.web.tasks import SiteTask

SITE_TASK_MODULES = (
    "palaestra.envs.web.sites.shop_tasks",
    "palaestra.envs.web.sites.forum_tasks",
    "palaestra.envs.web.sites.wiki_tasks",
    "palaestra.envs.web.sites.admin_tasks",
)


@lru_cache(maxsize=1)
def all_tasks() -> tuple[SiteTask, ...]:
    """The tasks of every site (ids are unique; checked here)."""
    import importlib

    tasks: list[SiteTask] = []
    for module in SITE_TASK_MODULES:
        tasks.extend(importlib.import_module(module).TASKS)
    ids = [task.id for task in tasks]
    repeated = sorted({task_id for task_id in ids if ids.count(task_id) > 1})
    if repeated:
        raise ValueError(f"web task ids repeat: {', '.join(repeated)}")
    return tuple(tasks)
