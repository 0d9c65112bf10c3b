"""`python -m app [--reload | --workers N]`: validate settings, then serve with uvicorn
(app/server.py: one process or several, each draining on SIGTERM)."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from app.config import load_settings
from app.errors import ConfigError, PluginError
from app.logs import uvicorn_log_config
from app.server import serve, shutdown_timeout
from app.serving import server_options

# What uvicorn exits with when startup fails (uvicorn.config.STARTUP_FAILURE).
STARTUP_FAILURE = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve the voice agent.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--reload", action="store_true", help="restart on code changes (development)")
    mode.add_argument("--workers", type=int, metavar="N", help="worker processes (default: WORKERS, 1)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        settings = load_settings()
        workers = args.workers or settings.workers
        if args.reload and workers > 1:
            raise ConfigError(f"--reload runs one process; WORKERS={workers} asks for more: unset it")
        # Fail here, with a plain message, rather than inside uvicorn's factory call.
        from app.main import create_app

        app = create_app(settings)
    except (ConfigError, PluginError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    several = args.reload or workers > 1
    if several:  # built only to check it; every process builds its own
        app.state.context.provider.close()
    config = uvicorn.Config(
        # Reloading and workers need an import string (each process builds its own app);
        # otherwise the app already built serves, so startup work (decoders, voices) happens once.
        "app.main:create_app" if several else app,
        factory=several,
        host=settings.host,
        port=settings.port,
        reload=args.reload,
        reload_dirs=["app", str(settings.tools_dir)] if args.reload else None,
        workers=workers,
        # Every level is set in log_config: uvicorn's log_level would put its own loggers,
        # and so websockets' frame and header lines, at DEBUG.
        log_level=None,
        log_config=uvicorn_log_config(settings.log_level, settings.debug_loggers, settings.log_format),
        timeout_graceful_shutdown=shutdown_timeout(settings),
        **server_options(settings),
    )
    return 0 if serve(config) else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
