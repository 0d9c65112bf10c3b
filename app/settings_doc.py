"""`.env.example`, rendered from the `Settings` declarations and the extension registry.

`python -m app.settings_doc [PATH]` (`make env-example`) writes it; a unit test checks the
committed file against `render_env_example()`, so the docs cannot drift from the code.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from app.config import Settings, setting_of

HEADER = """\
# Copy to .env and edit. The process environment overrides this file.
# Every setting is listed with its default; an invalid value stops startup with a
# message naming the variable and the values it accepts.
"""
HEADING_WIDTH = 79


def render_env_example() -> str:
    lines = HEADER.splitlines()
    defaults = Settings()
    for f in fields(Settings):
        spec = setting_of(f)
        if spec.section:
            lines += ["", f"# --- {spec.section} ".ljust(HEADING_WIDTH, "-")]
        lines += [f"# {line}".rstrip() for line in spec.doc.splitlines()]
        for name, extension in (spec.choices or {}).items():
            lines.append(f"# {name}: {extension.description}")
        lines.append(f"{f.name.upper()}={env_value(getattr(defaults, f.name))}")
    return "\n".join(lines) + "\n"


def env_value(value: object) -> str:
    """A default as the environment spells it: the inverse of the field's parser."""
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)  # a Secret's str() is its value: the defaults are all empty


def main(argv: list[str]) -> None:
    path = Path(argv[0] if argv else ".env.example")
    path.write_text(render_env_example())
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
