"""ProcessWorkers with real worker processes: results, errors, kills, bounds, shutdown.

The functions run are builtins, so no test module has to be loaded in the workers;
`sum(range(10**18))` is runaway work that holds the GIL in C, like a huge big-int power.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from app.workers import ProcessWorkers, WorkerError
from tests.support import gone

pytestmark = pytest.mark.anyio
RUNAWAY = range(10**18)


@pytest.fixture
async def workers() -> AsyncIterator[ProcessWorkers]:
    pool = ProcessWorkers(1)
    yield pool
    await pool.aclose()


async def test_runs_in_another_process_and_reuses_it(workers: ProcessWorkers) -> None:
    pid = await workers.run(os.getpid)
    assert pid != os.getpid()
    assert await workers.run(os.getpid) == pid
    assert workers.pids == [pid]
    assert await workers.run(divmod, 17, 5) == (3, 2)


async def test_prewarm_starts_the_worker_the_first_call_then_uses(workers: ProcessWorkers) -> None:
    assert workers.pids == []
    await workers.prewarm()
    (started,) = workers.pids
    await workers.prewarm()  # one idle worker is enough
    assert workers.pids == [started]
    assert await workers.run(os.getpid) == started


async def test_an_exception_comes_back_as_its_own_class(workers: ProcessWorkers) -> None:
    with pytest.raises(ValueError, match="invalid literal for int"):
        await workers.run(int, "twelve")
    assert await workers.run(int, "12") == 12  # the process is still good


async def test_an_unpicklable_result_is_a_worker_error(workers: ProcessWorkers) -> None:
    with pytest.raises(WorkerError, match="unpicklable reply"):
        await workers.run(threading.Lock)


async def test_a_cancelled_call_kills_its_process(workers: ProcessWorkers) -> None:
    pid = await workers.run(os.getpid)
    with anyio.move_on_after(0.5) as scope:
        await workers.run(sum, RUNAWAY)  # the same, idle, process takes it
    assert scope.cancelled_caught
    assert gone(pid)  # killed and reaped before the call returned
    assert workers.pids == []
    fresh = await workers.run(os.getpid)
    assert fresh != pid


async def test_a_worker_that_dies_is_replaced(workers: ProcessWorkers) -> None:
    pid = await workers.run(os.getpid)
    with pytest.raises(WorkerError, match="ended unexpectedly"):
        await workers.run(os._exit, 3)
    assert gone(pid)
    assert await workers.run(os.getpid) != pid


async def test_calls_beyond_the_size_wait_for_a_free_process(workers: ProcessWorkers) -> None:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(workers.run, sum, RUNAWAY)
        await wait_all_tasks_blocked()
        with anyio.move_on_after(0.3) as waiting:
            await workers.run(os.getpid)
        assert waiting.cancelled_caught  # it never got a process of its own
        assert len(workers.pids) == 1
        tasks.cancel_scope.cancel()
    assert workers.pids == []


async def test_close_kills_every_process_and_refuses_new_calls(workers: ProcessWorkers) -> None:
    idle = await workers.run(os.getpid)
    second = ProcessWorkers(1)
    busy = await second.run(os.getpid)
    failures: list[BaseException] = []

    async def runaway() -> None:
        with pytest.raises(WorkerError) as info:
            await second.run(sum, RUNAWAY)
        failures.append(info.value)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(runaway)
        await wait_all_tasks_blocked()
        await workers.aclose()
        await second.aclose()
    assert gone(idle)
    assert gone(busy)
    assert len(failures) == 1
    with pytest.raises(WorkerError, match="shut down"):
        await workers.run(os.getpid)
