"""The workspace's services and their tools, by name: filesystem, email, calendar, knowledge base."""

from __future__ import annotations

from palaestra.envs.service.toolkit import ToolSpec, tool_spec
from palaestra.envs.workspace import calendars, filesystem, knowledge, mail

SERVICES: dict[str, tuple[ToolSpec, ...]] = {
    module.__name__.rsplit(".", 1)[-1]: tuple(
        spec for fn in module.TOOLS if (spec := tool_spec(fn)) is not None
    )
    for module in (filesystem, mail, calendars, knowledge)
}
"""Each service's tools, in the order agents read them (`filesystem`, `mail`, `calendars`, `knowledge`)."""

WORKSPACE_TOOLS: dict[str, ToolSpec] = {spec.name: spec for specs in SERVICES.values() for spec in specs}
"""Every workspace tool by name."""


def service_tools(names: str | None) -> dict[str, ToolSpec]:
    """The tools of some services (`mail,calendars`; None or empty: all of them)."""
    if not names:
        return dict(WORKSPACE_TOOLS)
    chosen: dict[str, ToolSpec] = {}
    for name in (piece.strip() for piece in names.split(",") if piece.strip()):
        if name not in SERVICES:
            raise ValueError(f"unknown workspace service {name!r}; services: {', '.join(SERVICES)}")
        chosen.update({spec.name: spec for spec in SERVICES[name]})
    return chosen


__all__ = ["SERVICES", "WORKSPACE_TOOLS", "service_tools"]
