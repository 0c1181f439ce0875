"""Progress lines for long stages: done/total, rate (rows/s or tokens/s) and an ETA, printed at most
every `every` seconds to stderr (so they show in a terminal and in Prefect's captured logs)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, unit: str = "rows", every: float = 5.0, stream=None):
        self.label, self.unit, self.every = label, unit, every
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int, rate: float | None = None, **metrics: float) -> None:
        now = time.perf_counter()
        final = done >= total
        if not final and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = rate if rate is not None else done / elapsed
        eta = "" if final else (f" eta {(total - done) / rate:.0f}s" if rate > 0 and done else " eta ?")
        extra = "".join(f" {k}={v:.4g}" for k, v in metrics.items())
        self.stream.write(f"[{self.label}] {done}/{total} {rate:,.0f} {self.unit}/s{extra} elapsed {elapsed:.0f}s{eta}\n")
        self.stream.flush()
