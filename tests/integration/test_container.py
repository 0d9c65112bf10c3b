"""The image's CMD, run as a container runs it: as PID 1 of its own PID namespace, with the
image's environment. Docker cannot run here; `unshare --pid` gives the same PID 1 rules
(the kernel delivers a signal to PID 1 only if it handles it), which is what decides
whether `docker stop` drains the server or waits for SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from app.config import Settings
from tests.deploy_files import exec_form, healthcheck, image
from tests.support import ROOT, connect_ws, free_port, receive_until, start, stop, wait_ready

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# The image puts its virtualenv first on PATH; here that is the test's own.
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def pid_namespaces_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def namespace_pid(pid: int) -> int:
    """The id process `pid` has in its own (innermost) PID namespace."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


@contextmanager
def as_pid_1(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`command` as PID 1 of a new PID namespace (unshare forks it and waits for it, and
    kills it if unshare itself is stopped); its log goes to a pipe; stopped however the
    block ends."""
    with subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", *command],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            yield process
        finally:
            stop(process)


@pytest.mark.skipif(not pid_namespaces_available(), reason="needs unshare --pid (root or user namespaces)")
async def test_the_cmd_as_pid_1_serves_passes_its_healthcheck_and_stops_on_the_stop_signal() -> None:
    stage = image()
    port = free_port()
    env = {
        **os.environ,
        **stage.env(),
        "PATH": VENV_PATH,
        # Loopback only here, a free port, and a model that needs no AWS account.
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "MODEL_PROVIDER": "echo",
        "LOG_LEVEL": "INFO",
    }
    with as_pid_1(exec_form(stage.last("CMD")), env) as process:
        await wait_ready(process)
        (pid_1,) = children(process.pid)
        assert namespace_pid(pid_1) == 1

        # The image's HEALTHCHECK, exactly as written, against this port.
        _, check = healthcheck(stage)
        with anyio.fail_after(10):
            checked = await anyio.run_process(check, env=env, check=False)
        assert checked.returncode == 0, checked.stderr.decode()

        # Tool work runs in forked worker processes: they work under PID 1 too.
        async with httpx.AsyncClient() as client, connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws:
            await start(ws)
            await ws.send_text(json.dumps({"text": '/tool calculator {"expression": "12*7"}'}))
            seen = await receive_until(ws, "transcript", final=True)
        assert seen[-1]["text"] == "calculator says: 84"

        os.kill(pid_1, signal.Signals[stage.last("STOPSIGNAL")])
        # Exits cleanly well within the grace period the Dockerfile asks for.
        with anyio.fail_after(Settings().drain_timeout + 10):
            code = await anyio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
        assert code == 0
