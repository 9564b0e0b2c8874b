"""Thread priorities: background work (exports, deliveries to other systems) yields the CPU
to the frame loops."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def lower_priority(niceness: int = 19, idle: bool = False) -> None:
    """Lower the calling thread's CPU priority (Linux: a thread id is a PRIO_PROCESS id).

    ``idle`` also puts the thread in the SCHED_IDLE class: it runs only on CPU time nothing
    else wants, and any other thread that wakes up takes the CPU from it at once (with nice
    alone it would keep its slice, and a detector's threads that wait for each other would
    wait for it)."""
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed
        log.debug("cannot lower the priority of a work thread: %s", exc)
    if idle:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError) as exc:
            log.debug("cannot move a work thread to SCHED_IDLE: %s", exc)
