"""The head frame (:func:`midline.find_head_anatomy`) found in a helper process, beside the analysis.

Finding the head frame takes about 1 s of Python and SciPy/SimpleITK work that holds the interpreter lock, so on
a thread it ran one after the other with the findings' naming and the writing (``benchmarks/profile_analysis.py``);
in a process of its own it runs at the same time on the second core. One worker per engine process, started with
``spawn`` (never ``fork`` after torch has started its threads) as soon as an analysis command begins, so that its
start-up (Python, NumPy, SciPy, SimpleITK: about 0.5 s) overlaps the engine's own imports; it leaves when the
engine exits or is killed. Should the worker die, the frame is found in this process instead and the next job
starts a new worker: nothing but time is lost.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where the work is done, so that starting the worker imports nothing heavy here
    import SimpleITK as sitk

    from SMARTNetLib.analysis.midline import HeadAnatomy

WORKER_NICENESS = 10  # the analysis first: the worker runs on the CPU it leaves (POSIX)
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _worker_setup() -> None:
    """In the worker: exit as soon as the engine process has gone, however it ended (a killed engine cannot shut
    its pool down, and the worker would wait for work forever); keep freed memory for the next head."""
    from SMARTNetLib.analysis.engine_process import retain_freed_memory

    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(0)), daemon=True).start()
    retain_freed_memory()
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)


def _ready() -> bool:
    """In the worker: import the search and run it once on a small skull ahead of the first job. Its frame has the
    size of every head's, so the memory a head needs is already the worker's (kept by
    :func:`engine_process.retain_freed_memory`): the first head of a cold ``smartnet analyze`` took 2.6 s
    instead of 1.1 s without this, on a core that is idle while the engine imports torch."""
    import numpy as np
    import SimpleITK as sitk

    from SMARTNetLib.analysis.midline import find_head_anatomy

    z, y, x = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 64), np.linspace(-1, 1, 56), indexing="ij")
    r = np.sqrt(x**2 + y**2 + (0.6 * z) ** 2)
    skull = np.where(r < 0.9, 30, -1000).astype(np.int16)
    skull[(r >= 0.8) & (r < 0.9)] = 1200
    image = sitk.GetImageFromArray(skull)
    image.SetSpacing((3.0, 3.0, 6.0))
    try:
        find_head_anatomy(image)
    except (ValueError, RuntimeError):  # a warm-up: only its side effects count
        pass
    return True


def _find(ct: sitk.Image) -> HeadAnatomy:
    from SMARTNetLib.analysis.midline import find_head_anatomy

    return find_head_anatomy(ct).for_transfer()


def _executor() -> ProcessPoolExecutor:
    """The worker's pool, started (and warmed up by :func:`_ready`) on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_setup)
            _pool.submit(_ready)
        return _pool


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


def start() -> None:
    """Start the worker now, unless it runs already (it then gets ready while the caller does its own start-up)."""
    _executor()


def worker_pids() -> list[int]:
    """Process ids of the worker (none before :func:`start` or the first job)."""
    with _lock:
        return [] if _pool is None else [p.pid for p in (getattr(_pool, "_processes", None) or {}).values()]


class AnatomyJob:
    """:func:`find_head_anatomy` of one CT under way in the worker; :meth:`result` waits for it."""

    def __init__(self, ct: sitk.Image) -> None:
        self.ct = ct
        self.pool = _executor()
        try:
            self.future: Future | None = self.pool.submit(_find, ct)
        except (BrokenExecutor, RuntimeError):  # a worker that died earlier, or an interpreter shutting down
            _discard(self.pool)
            self.future = None

    def discard(self) -> None:
        """Not needed after all: dropped if it has not started (a started one runs to its end, unread)."""
        if self.future is not None:
            self.future.cancel()

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
