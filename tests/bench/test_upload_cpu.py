"""bench/upload_cpu.py's accounting: which process is which, and CPU and faults that grow."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from bench.upload_cpu import cpu_and_faults


def test_a_decode_worker_is_counted_apart_and_work_shows_in_cpu_and_faults() -> None:
    # A child whose command line names the decode worker module (it only sleeps).
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "service.decode_worker"]
    )
    try:
        before = cpu_and_faults(os.getpid())
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:  # CPU seconds, fresh pages
            np.ones(1 << 20).sum()
        after = cpu_and_faults(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert after["service"][0] - before["service"][0] >= 0.2
    assert after["service"][1] - before["service"][1] > 256
    assert after["decode"][1] > 0 and after["decode"][0] < 1.0  # found, and idle
