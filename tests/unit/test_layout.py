"""The test suite's own layout: shared helpers live in tests/support.py (and the other
helper modules beside it), never in a test module or conftest. A test module that
imports another one runs that module's tests' import-time code and couples the two, and
conftest is pytest's to load, not a module to import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

TESTS_DIR = ROOT / "tests"
TEST_MODULES = sorted(TESTS_DIR.rglob("test_*.py"))


def _is_test_module(dotted: str) -> bool:
    """Whether a dotted module name names a test module or conftest."""
    last = dotted.rpartition(".")[2]
    return last == "conftest" or last.startswith("test_")


def forbidden_imports(source: str) -> list[str]:
    """The modules a test module's source imports that are test modules or conftest,
    whether absolute (`from tests.unit.test_x import y`, `import tests.conftest`),
    by package (`from tests.unit import test_x`) or relative (`from .test_x import y`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if _is_test_module(base):
                found.append(base)
            else:  # `from package import test_x`: the names may be modules themselves
                prefix = base if base.endswith(".") else base + "."
                found += [prefix + a.name for a in node.names if _is_test_module(a.name)]
    return found


def test_the_suite_has_test_modules_to_check() -> None:
    assert len(TEST_MODULES) > 20
    assert Path(__file__).resolve() in TEST_MODULES


@pytest.mark.parametrize("path", TEST_MODULES, ids=lambda p: str(p.relative_to(TESTS_DIR)))
def test_a_test_module_imports_no_other_test_module_nor_conftest(path: Path) -> None:
    assert forbidden_imports(path.read_text()) == [], "move shared helpers into tests/support.py"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from tests.integration.test_server import run_server", ["tests.integration.test_server"]),
        ("from tests.conftest import TOOLS_DIR", ["tests.conftest"]),
        ("import tests.unit.test_calculator as calc", ["tests.unit.test_calculator"]),
        (
            "from tests.unit import test_calculator, test_weather",
            ["tests.unit.test_calculator", "tests.unit.test_weather"],
        ),
        ("from .test_server import stop", [".test_server"]),
        ("from . import conftest", [".conftest"]),
        ("def f():\n    from tests.integration.test_server import stop", ["tests.integration.test_server"]),
        ("from tests.support import start\nfrom tests.speech import speech\nimport testing", []),
        ("from tests import support", []),
    ],
)
def test_forbidden_imports_are_recognised_in_every_spelling(source: str, found: list[str]) -> None:
    assert forbidden_imports(source) == found
