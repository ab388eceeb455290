"""One way to make a HiGHS instance: single-threaded, quiet, and its banner kept off stdout.

Threads: HiGHS's thread scheduler is global to the process and sized by the first instance that runs. An
instance that later asks for another size does not run at all (`run()` returns kError, "the scheduler has
already been initialized to use N threads"): after one Lagrangian master LP at the default size, every MILP
solve of the same process failed and its batch went unplanned. All of ours run single-threaded (the solver's
batches are small and the machine is shared with the stream processor).

Banner: highspy 1.16 prints "Running HiGHS ..." to stdout when the process's first instance is made, before
any option can be set, which spoils commands whose stdout is their output (`dim solve` prints one JSON line).
The first instance is made with stdout pointed at stderr, where the logs go."""

from __future__ import annotations

import ctypes
import os
import sys
import threading

THREADS = 1
_first = threading.Lock()
_banner_done = False


def new_highs():
    import highspy

    global _banner_done
    if not _banner_done:
        with _first:
            if not _banner_done:
                _first_instance_to_stderr(highspy)
                _banner_done = True
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", THREADS)
    return h


def _first_instance_to_stderr(highspy) -> None:
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        highspy.Highs()
        ctypes.CDLL(None).fflush(None)  # the banner may sit in C's stdout buffer: out before fd 1 is restored
    finally:
        os.dup2(saved, 1)
        os.close(saved)
