"""The head frame (:func:`midline.find_head_anatomy`) found in a helper process, beside the analysis.

Finding the head frame takes about 1 s of Python and SciPy/SimpleITK work that holds the interpreter lock, so on a
thread it ran one after the other with the findings' naming and the writing (``benchmarks/profile_analysis.py``); in
a process of its own it runs at the same time. One worker per engine process, started with ``spawn`` (never ``fork``
after torch has started its threads) as soon as an analysis command begins, so that its start-up (Python, NumPy,
SciPy, SimpleITK) overlaps the engine's own imports; it leaves when the engine exits or is killed. ``smartnet
analyze`` gives it each head as soon as the head is read (the first one before torch is imported, the next ones
while the one before is analysed), and it runs at idle priority (Linux ``SCHED_IDLE``; elsewhere ``nice``), so it
takes only CPU the analysis leaves: on 2 cores a normal priority made heads with findings 0.4 s faster and heads
without 0.2 s slower; with more cores it runs alongside. A batch of several inputs runs it at normal priority, for
throughput. A job is stopped at its next step when nothing was segmented. Should the worker die, the frame is found
in this process instead and the next job starts a new worker: nothing but time is lost. Scripts that start jobs need
the ``if __name__ == "__main__":`` guard that ``spawn`` asks for (else the frame is found in this process).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where the work is done, so that starting the worker imports nothing heavy here
    import SimpleITK as sitk

    from SMARTNetLib.analysis.midline import HeadAnatomy

WORKER_NICENESS = 19  # where there is no SCHED_IDLE (macOS)
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_stop = None  # multiprocessing.Value shared with the pool's worker: jobs up to this id (jobs are read in
# the order they were submitted, so an earlier one has been read by then) are not wanted
_pool_idle = True  # the priority asked for by the last start(), kept by a worker that replaces a dead one
_stop_through = None  # in the worker: that value
_job_ids = itertools.count(1)


class Cancelled(Exception):
    """A job discarded while it ran."""


def _worker_setup(stop_through, idle: bool) -> None:
    """In the worker: exit as soon as the engine process has gone, however it ended (a killed engine cannot shut
    its pool down, and the worker would wait for work forever); keep freed memory for the next head; idle
    priority unless a batch asked for throughput."""
    from SMARTNetLib.analysis.engine_process import retain_freed_memory

    global _stop_through
    _stop_through = stop_through

    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(0)), daemon=True).start()
    retain_freed_memory()
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if idle and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif idle and hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    from SMARTNetLib.analysis import midline  # noqa: F401  (imported before the first head arrives)


def _find(ct: sitk.Image, job: int = 0) -> HeadAnatomy:
    """:func:`find_head_anatomy` for transfer; in the worker it stops between steps once ``job`` is discarded."""
    from SMARTNetLib.analysis.midline import find_head_anatomy

    def check() -> None:
        if _stop_through is not None and _stop_through.value >= job:
            raise Cancelled(f"anatomy job {job} discarded")

    return find_head_anatomy(ct, check).for_transfer()


def _executor() -> tuple[ProcessPoolExecutor, object]:
    """The worker's pool and its shared stop mark, started on first use."""
    global _pool, _pool_stop
    with _lock:
        if _pool is None:
            context = multiprocessing.get_context("spawn")
            _pool_stop = context.Value("q", 0)
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_worker_setup,
                                        initargs=(_pool_stop, _pool_idle))
        return _pool, _pool_stop


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def _started() -> bool:
    return True


def start(wait: float | None = None, idle: bool = True) -> None:
    """Start the worker process now, unless it runs already (it gets ready while the caller does its own start-up;
    a pool starts its process only with a first job); ``wait``: seconds to wait for it to be ready; ``idle``:
    at idle priority, for the latency of one analysis (``False`` for a batch's throughput: on 2 cores 33-35 instead
    of 29 volumes per minute over 6 copies of ``benchmarks/analyze.py``'s head, in alternating exploratory runs; a
    running worker keeps its priority)."""
    global _pool_idle
    _pool_idle = idle
    pool, _ = _executor()
    if not worker_pids() or wait is not None:
        ready = pool.submit(_started)
        if wait is not None:
            ready.result(timeout=wait)


def worker_pids() -> list[int]:
    """Process ids of the worker (none before :func:`start` or the first job)."""
    with _lock:
        return [] if _pool is None else [p.pid for p in (getattr(_pool, "_processes", None) or {}).values()]


class AnatomyJob:
    """:func:`find_head_anatomy` of one CT under way in the worker; :meth:`result` waits for it."""

    def __init__(self, ct: sitk.Image) -> None:
        self.ct, self.id = ct, next(_job_ids)
        self.pool, self.stop_through = _executor()
        try:
            self.future: Future | None = self.pool.submit(_find, ct, self.id)
        except (BrokenExecutor, RuntimeError):  # a worker that died earlier, or an interpreter shutting down
            _discard(self.pool)
            self.future = None

    def discard(self) -> None:
        """Not needed after all: dropped if it has not started, else stopped at its next step."""
        if self.future is not None and not self.future.cancel():
            with self.stop_through.get_lock():
                self.stop_through.value = max(self.stop_through.value, self.id)

    def result(self) -> HeadAnatomy:
        """The head's anatomy (:meth:`HeadAnatomy.for_transfer`); raises what :func:`find_head_anatomy` raises."""
        if self.future is not None:
            try:
                return self.future.result()
            except BrokenExecutor:  # the worker died (killed, out of memory): here instead
                _discard(self.pool)
        return _find(self.ct)


def submit(ct: sitk.Image) -> AnatomyJob:
    """Start finding the head frame of ``ct`` in the worker."""
    return AnatomyJob(ct)
