"""The deployment files as data, for tests that check them against the settings and the app:
the Dockerfile (its stages and instructions), .dockerignore, and the Kubernetes manifests
in deploy/k8s (PyYAML, which strands already depends on).

Docker cannot run here, so the image is checked by reading what it sets; the parser knows
the Dockerfile syntax this project uses (comments, line continuations, exec-form JSON),
not every corner of Docker's.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from tests.support import ROOT

DOCKERFILE: Final = ROOT / "Dockerfile"
DOCKERIGNORE: Final = ROOT / ".dockerignore"
K8S_DIR: Final = ROOT / "deploy" / "k8s"

# ENV names in the image that are not settings of the app: Python's own, and the venv on PATH.
NOT_SETTINGS: Final = re.compile(r"PYTHON\w*|PATH")


@dataclass
class Stage:
    """One FROM ... and the instructions under it, as (KEYWORD, arguments) in order."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        """The arguments of the last `keyword`: the one in force (CMD, USER, ...)."""
        found = self.all(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """Every ENV of the stage, as NAME=value pairs (the `ENV NAME value` form is not used)."""
        pairs = [token.partition("=") for args in self.all("ENV") for token in shlex.split(args)]
        assert all(sep for _, sep, _ in pairs), "ENV is written as NAME=value"
        return {name: value for name, _, value in pairs}


def dockerfile_stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile, in order (the last one is the image)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue  # comments (and parser directives) only where an instruction could start
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base=base.strip(), name=name.strip()))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def image() -> Stage:
    return dockerfile_stages(DOCKERFILE.read_text())[-1]


def exec_form(args: str) -> list[str]:
    """An exec-form instruction's argument list (CMD ["python", "-m", "app"])."""
    parsed = json.loads(args)
    assert isinstance(parsed, list), f"not exec form: {args}"
    return [str(item) for item in parsed]


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    """A HEALTHCHECK's options (--interval=30s -> {"interval": "30s"}) and its exec-form command."""
    options, _, command = stage.last("HEALTHCHECK").partition(" CMD ")
    assert command, "HEALTHCHECK has no CMD (or is NONE)"
    flags = {}
    for option in options.split():
        name, _, value = option.removeprefix("--").partition("=")
        flags[name] = value
    return flags, exec_form(command)


def url_path(command: list[str]) -> str:
    """The path of the loopback URL a health-check command asks for."""
    found = re.search(r"http://[^/'\"\s]+(/[\w/.-]*)", " ".join(command))
    assert found, f"no http:// URL in {command}"
    return found[1]


def dockerignore_patterns(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (relative to the context) out: a pattern matches it
    or a folder it is in; `**/` matches at any depth. Negations (!) are not used here."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    return any(
        fnmatch.fnmatchcase(candidate, pattern)
        or (pattern.startswith("**/") and fnmatch.fnmatchcase(Path(candidate).name, pattern[3:]))
        for pattern in patterns
        for candidate in candidates
    )


def manifests(directory: Path = K8S_DIR) -> dict[tuple[str, str], dict[str, Any]]:
    """The Kubernetes objects of every *.yaml in `directory` (not its sub-folders), by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "kind" in document and "metadata" in document:
                key = (document["kind"], document["metadata"]["name"])
                assert key not in objects, f"{key} is defined twice"
                objects[key] = document
    return objects


def load_yaml(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document
