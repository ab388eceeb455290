"""One way to make a HiGHS instance, so that every solve in a process asks for the same thread count.

HiGHS's thread scheduler is global to the process and sized by the first instance that runs. An instance
that later asks for another size does not run at all (`run()` returns kError, "the scheduler has already been
initialized to use N threads"): after one Lagrangian master LP at the default size, every MILP solve of the
same process failed and its batch went unplanned. All of ours run single-threaded (the solver's batches are
small and the machine is shared with the stream processor)."""

from __future__ import annotations

THREADS = 1


def new_highs():
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", THREADS)
    return h
