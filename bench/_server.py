"""What the benchmarks share: a real `python -m app` on a free loopback port, and its CPU
time and memory read from /proc."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def app_server(
    env: dict[str, str], log: list[str], *, module: str = "app", cpus: str | None = None
) -> AsyncIterator[tuple[subprocess.Popen[str], int]]:
    """`python -m app` (or another `module` that serves /health on HOST:PORT) with `env` on
    a free port, ready (its /health answers), on the CPUs `cpus` (taskset's list) if given;
    its output is drained into `log` by a thread. Stopped, and killed if it must be, on exit."""
    port = free_port()
    base = {"HOST": "127.0.0.1", "AWS_EC2_METADATA_DISABLED": "true"}
    command = [sys.executable, "-m", module]
    process = subprocess.Popen(  # noqa: ASYNC220 - starting it is quick; a thread drains its output
        command if cpus is None else ["taskset", "-c", cpus, *command],
        cwd=ROOT,
        env=os.environ | base | env | {"PORT": str(port)},
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None  # stdout=PIPE
    output = process.stdout
    drain = threading.Thread(target=lambda: log.extend(iter(output.readline, "")), daemon=True)
    drain.start()
    try:
        await _ready(process, port, log)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        drain.join(timeout=5)
        output.close()


async def _ready(process: subprocess.Popen[str], port: int, log: list[str]) -> None:
    async with httpx.AsyncClient(timeout=1.0) as client, asyncio.timeout(START_TIMEOUT):
        while process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("the server exited before it was ready:\n" + "".join(log[-20:]))


IDLE_TIMEOUT = 60.0


async def wait_idle(port: int) -> None:
    """Until the server on `port` reports no open session on /health (its teardown done):
    another process's state, so it is polled."""
    url = f"http://127.0.0.1:{port}/health"
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(IDLE_TIMEOUT):
        while (await client.get(url)).json()["sessions"]:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now (VmRSS) and at its peak (VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


async def handshake(
    port: int, sock: socket.socket | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket to /ws after its handshake, on `sock` (already connected) if given."""
    if sock is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:
        reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return reader, writer
