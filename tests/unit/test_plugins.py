from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import PluginError
from app.plugins import load_tools

TOOL = '''
from strands import tool

@tool
def {name}(x: int) -> int:
    """Return x.

    Args:
        x: a number
    """
    return x
'''


def test_shipped_tools_load() -> None:
    tools = load_tools(Path(__file__).resolve().parents[2] / "tools")
    assert sorted(t.tool_name for t in tools) == ["calculator", "current_time", "weather"]


def test_every_tool_in_every_file_is_found_and_private_files_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(TOOL.format(name="alpha") + TOOL.format(name="beta"))
    (tmp_path / "b.py").write_text(TOOL.format(name="gamma"))
    (tmp_path / "_helper.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "notes.txt").write_text("not a plugin")
    assert sorted(t.tool_name for t in load_tools(tmp_path)) == ["alpha", "beta", "gamma"]


def test_import_failure_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import does_not_exist_anywhere\n")
    with pytest.raises(PluginError) as info:
        load_tools(tmp_path)
    assert str(broken) in str(info.value)
    assert "ModuleNotFoundError" in str(info.value)


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad_syntax.py").write_text("def (:\n")
    with pytest.raises(PluginError, match=r"bad_syntax\.py failed to import: SyntaxError"):
        load_tools(tmp_path)


def test_duplicate_tool_names_stop_loading(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(TOOL.format(name="same"))
    (tmp_path / "two.py").write_text(TOOL.format(name="same"))
    with pytest.raises(PluginError) as info:
        load_tools(tmp_path)
    message = str(info.value)
    assert "tool 'same'" in message
    assert "one.py" in message
    assert "two.py" in message


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="is not a directory"):
        load_tools(tmp_path / "nope")
