"""`python -m app [--reload]`: validate settings, then serve with uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from app.config import load_settings
from app.errors import ConfigError, PluginError
from app.logs import uvicorn_log_config
from app.serving import server_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve the voice agent.")
    parser.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        # Fail here, with a plain message, rather than inside uvicorn's factory call.
        from app.main import create_app

        app = create_app(settings)
    except (ConfigError, PluginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        # Reloading needs an import string (the worker process builds its own app); otherwise
        # the app already built serves, so startup work (decoders, voices) happens once.
        "app.main:create_app" if args.reload else app,
        factory=args.reload,
        host=settings.host,
        port=settings.port,
        reload=args.reload,
        reload_dirs=["app", str(settings.tools_dir)] if args.reload else None,
        # Every level is set in log_config: uvicorn's log_level would put its own loggers,
        # and so websockets' frame and header lines, at DEBUG.
        log_level=None,
        log_config=uvicorn_log_config(settings.log_level, settings.debug_loggers, settings.log_format),
        **server_options(settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
