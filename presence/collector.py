"""How often a worker's garbage collector runs.

CPython's defaults (a young collection every 700 net allocations of container objects, a full
one after 100 of those) suit short scripts. A worker holds thousands of long-lived objects
(sockets, tasks, cached profiles) that every older collection traverses again. In a worker
started and sent a storm of 1 000 connects (which used ~10 s of CPU), collections took 1.46 s
at the defaults and 0.20 s at these thresholds. Cycles (an exception's traceback, a closed
socket's callbacks) are still collected, only less often.
"""

from __future__ import annotations

import gc

# A young collection per 10 000 net container allocations, an older one per 50 of those, a full
# one per 100 older ones.
THRESHOLDS = (10_000, 50, 100)


def tune() -> None:
    """Raise the thresholds (at start, before the first request)."""
    gc.set_threshold(*THRESHOLDS)


def freeze_startup_heap() -> None:
    """What startup made (modules, the app, its components) lives as long as the process:
    moved out of the collector's generations, it is never traversed again."""
    gc.collect()
    gc.freeze()
