"""Tool plugins: every `*.py` in `TOOLS_DIR` is imported once, at startup.

Each strands `@tool` (any `AgentTool`) a module defines at top level is registered. A
module that fails to import, or a tool name defined twice, stops startup with an error
naming the file. Files whose names start with `_` are skipped (helpers, `__init__`).

Tools reach shared services (settings, the pooled HTTP client, the worker processes for
CPU-bound work) through `services(tool_context)` rather than globals, so tests can hand
them a mock transport.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
from strands.types.tools import AgentTool, ToolContext

from app.config import Settings
from app.errors import PluginError
from app.workers import ProcessWorkers

logger = logging.getLogger(__name__)

SERVICES_KEY = "services"
_MODULE_PREFIX = "voice_agent_tools"


@dataclass(frozen=True, slots=True)
class ToolServices:
    settings: Settings
    http: httpx.AsyncClient
    workers: ProcessWorkers

    async def aclose(self) -> None:
        try:
            await self.http.aclose()
        finally:
            await self.workers.aclose()


def services(tool_context: ToolContext[Any]) -> ToolServices:
    return cast(ToolServices, tool_context.invocation_state[SERVICES_KEY])


def _import(path: Path) -> Any:
    name = f"{_MODULE_PREFIX}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"tool plugin {path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PluginError(f"tool plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def load_tools(directory: Path) -> list[AgentTool]:
    if not directory.is_dir():
        raise PluginError(f"TOOLS_DIR {directory} is not a directory")
    found: dict[str, tuple[AgentTool, Path]] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _import(path)
        for value in vars(module).values():
            if not isinstance(value, AgentTool):
                continue
            if value.tool_name in found and found[value.tool_name][0] is not value:
                other = found[value.tool_name][1]
                raise PluginError(f"tool {value.tool_name!r} in {path} is already defined in {other}")
            found[value.tool_name] = (value, path)
    logger.info("loaded %d tools from %s: %s", len(found), directory, ", ".join(sorted(found)))
    return [tool for tool, _ in found.values()]
