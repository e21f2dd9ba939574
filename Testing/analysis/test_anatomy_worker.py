"""The head frame found in the helper process: the same answer as in this process, a discarded job stops, a
worker that dies costs nothing but time, and a killed engine leaves no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest

from conftest import process_alive, process_gone
from SMARTNetLib.analysis import anatomy_worker
from SMARTNetLib.analysis.midline import find_head_anatomy


def test_the_worker_gives_the_inline_anatomy_and_outlives_its_own_death(real_head):
    inline = find_head_anatomy(real_head)
    point = np.array(real_head.TransformContinuousIndexToPhysicalPoint([s / 2 for s in real_head.GetSize()]))
    served = anatomy_worker.submit(real_head).result()
    assert served.midline_shift() == inline.midline_shift() and served.midline_shift()["measurable"]
    assert served.position(point) == inline.position(point) is not None
    assert np.array_equal(served.image.depth, inline.image.depth) and served.image.smooth.size == 0
    assert served.frame.GetSize() == (1, 1, 1)  # its geometry alone crossed over

    discarded = anatomy_worker.submit(real_head)
    discarded.discard()  # dropped before it starts, or stopped at its next step
    with pytest.raises((anatomy_worker.Cancelled, CancelledError)):
        discarded.future.result(timeout=60)
    assert anatomy_worker.submit(real_head).result().midline_shift() == inline.midline_shift()

    (pid,) = anatomy_worker.worker_pids()
    os.kill(pid, signal.SIGKILL)
    assert process_gone(pid)
    again = anatomy_worker.submit(real_head).result()  # found here when the pool has noticed, else by a new worker
    assert again.midline_shift() == inline.midline_shift()
    anatomy_worker.submit(real_head).result()
    assert anatomy_worker.worker_pids() and pid not in anatomy_worker.worker_pids()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_a_killed_engine_leaves_no_worker_behind():
    code = ("import time\nfrom SMARTNetLib.analysis import anatomy_worker\n"
            "anatomy_worker.start(wait=60)\n"  # the worker has run its set-up, the watch on its engine included
            "pids = anatomy_worker.worker_pids()\n"
            "print(pids[0] if pids else 0, flush=True)\ntime.sleep(600)\n")
    engine = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(engine.stdout.readline())
        assert worker and process_alive(worker), "start() started no worker process"
    finally:
        engine.kill()
        engine.wait(10)
    assert process_gone(worker), "the anatomy worker outlived its engine"
