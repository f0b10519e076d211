"""Start-to-ready and stop time of the embedded Dovecot (issue 2's figure). Not a test: prints numbers.

Usage: .venv/bin/python bench/dovecot_ready.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time

from conformance.providers.dovecot import DovecotProvider


def main(n: int = 10) -> None:
    ready, stop = [], []
    for _ in range(n):
        p = DovecotProvider()
        p.start()
        ready.append(p.ready_seconds)
        t0 = time.monotonic()
        p.stop()
        stop.append(time.monotonic() - t0)
    print(f"embedded Dovecot, {n} starts: start-to-ready median {statistics.median(ready):.3f} s "
          f"(min {min(ready):.3f}, max {max(ready):.3f}); stop median {statistics.median(stop):.3f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
