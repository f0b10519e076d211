"""Latency figures of a load run: exact percentiles of one process's samples, and a mergeable histogram.

A shard (one process, one asyncio loop) keeps its samples and reports exact percentiles; shards on other
workers or machines are joined through their histograms (log-spaced buckets, 2 % wide: a merged percentile is
within 2 % of the exact one). Nothing here measures time; callers pass seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

PERCENTILES = (50, 95, 99)
GROWTH = 1.02  # each bucket 2 % wider than the previous
FLOOR_S = 1e-5  # 10 µs: everything below lands in bucket 0


def percentile(sorted_values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of an ascending list; 0.0 for an empty one."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def percentile_interval(sorted_values: list[float], p: float, z: float = 1.96) -> tuple[float, float]:
    """A distribution-free 95 % confidence interval of the p-th percentile: the order statistics at the ranks
    n*q -/+ z*sqrt(n*q*(1-q)) (normal approximation of the binomial count of samples below the percentile)."""
    n = len(sorted_values)
    if not n:
        return 0.0, 0.0
    q = p / 100
    half = z * math.sqrt(n * q * (1 - q))
    lo = max(0, math.floor(n * q - half) - 1)
    hi = min(n - 1, math.ceil(n * q + half) - 1)
    return sorted_values[lo], sorted_values[hi]


def bucket_of(seconds: float) -> int:
    if seconds <= FLOOR_S:
        return 0
    return 1 + int(math.log(seconds / FLOOR_S) / math.log(GROWTH))


def bucket_upper(index: int) -> float:
    return FLOOR_S * GROWTH ** index


@dataclass
class Histogram:
    """Counts per log-spaced bucket (sparse), mergeable across shards and stored in results.json."""

    counts: dict[int, int] = field(default_factory=dict)
    n: int = 0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        b = bucket_of(seconds)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1
        self.max_s = max(self.max_s, seconds)

    def merge(self, other: "Histogram") -> "Histogram":
        for b, c in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + c
        self.n += other.n
        self.max_s = max(self.max_s, other.max_s)
        return self

    def percentile(self, p: float) -> float:
        if not self.n:
            return 0.0
        rank = max(1, math.ceil(p / 100 * self.n))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(bucket_upper(b), self.max_s)
        return self.max_s

    def as_dict(self) -> dict[str, Any]:
        return {"growth": GROWTH, "floor_s": FLOOR_S, "n": self.n, "max_s": round(self.max_s, 6),
                "counts": {str(b): c for b, c in sorted(self.counts.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Histogram":
        return cls({int(b): int(c) for b, c in d.get("counts", {}).items()}, int(d.get("n", 0)),
                   float(d.get("max_s", 0.0)))


@dataclass
class Distribution:
    """Samples of one group (path or control): exact percentiles, and the histogram for merging."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    def extend(self, values: Iterable[float]) -> None:
        self.samples.extend(values)

    def summary(self) -> dict[str, Any]:
        """n, p50/p95/p99/max in seconds, and the histogram."""
        s = sorted(self.samples)
        h = Histogram()
        for v in s:
            h.add(v)
        out: dict[str, Any] = {"n": len(s)}
        for p in PERCENTILES:
            out[f"p{p}_s"] = round(percentile(s, p), 6)
        out["max_s"] = round(s[-1], 6) if s else 0.0
        out["ci95"] = {f"p{p}_s": [round(v, 6) for v in percentile_interval(s, p)] for p in PERCENTILES}
        out["histogram"] = h.as_dict()
        return out


def merged_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of several shards' groups, from their histograms (percentiles within one bucket)."""
    h = Histogram()
    for s in summaries:
        h.merge(Histogram.from_dict(s.get("histogram", {})))
    out: dict[str, Any] = {"n": h.n}
    for p in PERCENTILES:
        out[f"p{p}_s"] = round(h.percentile(p), 6)
    out["max_s"] = round(h.max_s, 6)
    out["histogram"] = h.as_dict()
    return out
