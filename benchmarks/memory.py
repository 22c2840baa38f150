"""Resident memory of this process, for the benchmarks (Linux ``/proc``, else ``ru_maxrss``)."""

from __future__ import annotations

import os
import resource


def rss_mib() -> float:
    """Resident memory now, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Start the peak-RSS count afresh (Linux: ``clear_refs`` 5 resets VmHWM), so that the peak
    of importing torch and loading models is not taken for the measured work's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    """VmHWM (peak RSS since the last reset), else ru_maxrss (peak since the start), MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
