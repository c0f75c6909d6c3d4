"""The statistics of the impact report: differences between celebrated and held-out accounts, with
95% confidence intervals, naive and stratified. Pure functions, no I/O.

Why these methods:
- a difference of two proportions (renewal rate, advocacy rate): Newcombe's hybrid score interval
  (method 10 of Newcombe 1998, built from the two Wilson intervals). It keeps its coverage near 95%
  for rates close to 0% or 100% and for modest counts, where the plain Wald interval does not.
- a difference of two means (NPS: each response scores +100 for a promoter, 9-10; 0 for a passive,
  7-8; -100 for a detractor, 0-6; the mean of those is the NPS): Welch's interval (unequal variances,
  Welch-Satterthwaite degrees of freedom).
- stratified (by tier x industry x tenure bucket): the Mantel-Haenszel risk difference with Sato's
  variance (consistent when there are many small strata) for proportions; for NPS the same weights
  (n1 n0 / (n1 + n0) per stratum) over the stratum differences, with a normal interval. A stratum
  with no account in one arm cannot compare anything and drops out (counted in `dropped`).
Why stratify at all: anniversaries reach only long-tenured accounts, and long-tenured accounts renew
more; when the holdout's share differs by milestone kind, or chance puts more of one tenure in one
arm, the naive difference mixes the celebration's effect with tenure's. Within a stratum the arms
are alike, so the pooled within-stratum difference is the fairer figure.

A difference is only called when each arm has at least `MIN_PER_ARM` accounts and the interval
excludes zero; otherwise the verdict says why and no lift is claimed.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)  # 1.95996...
MIN_PER_ARM = 30

NOT_ENOUGH = "not enough data"
NO_CLEAR = "no clear difference"
HIGHER = "higher when celebrated"
LOWER = "lower when celebrated"


@dataclass(frozen=True)
class Interval:
    """A difference (celebrated minus held out) and its 95% interval, in the outcome's own unit."""

    estimate: float
    low: float
    high: float
    method: str

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion x/n (n > 0)."""
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> Interval:
    """p1 - p0 with Newcombe's hybrid score interval (both n > 0)."""
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson(x1, n1, z)
    l0, u0 = wilson(x0, n0, z)
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return Interval(d, low, high, "Newcombe hybrid score (Wilson)")


@dataclass(frozen=True)
class Table:
    """One stratum's 2x2 counts: x of n accounts with the outcome, celebrated (1) and held out (0)."""

    x1: int
    n1: int
    x0: int
    n0: int


def mantel_haenszel(strata: Iterable[Table], z: float = Z95) -> tuple[Interval | None, int]:
    """The Mantel-Haenszel risk difference with Sato's (1989) variance; (None, dropped) when no stratum
    has both arms. `dropped`: accounts in strata with one arm empty."""
    num = wsum = p_sum = q_sum = 0.0
    dropped = 0
    for t in strata:
        if t.n1 == 0 or t.n0 == 0:
            dropped += t.n1 + t.n0
            continue
        n = t.n1 + t.n0
        num += (t.x1 * t.n0 - t.x0 * t.n1) / n
        wsum += t.n1 * t.n0 / n
        p_sum += (t.n1 ** 2 * t.x0 - t.n0 ** 2 * t.x1 + t.n1 * t.n0 * (t.n0 - t.n1) / 2) / n ** 2
        q_sum += (t.x1 * (t.n0 - t.x0) + t.x0 * (t.n1 - t.x1)) / (2 * n)
    if wsum == 0:
        return None, dropped
    rd = num / wsum
    se = math.sqrt(max(rd * p_sum + q_sum, 0.0)) / wsum
    return Interval(rd, rd - z * se, rd + z * se, "Mantel-Haenszel risk difference (Sato variance)"), dropped


@dataclass(frozen=True)
class Sample:
    """Values of one arm (one stratum): count, mean and sample variance."""

    n: int
    mean: float
    var: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        n = len(values)
        mean = sum(values) / n if n else 0.0
        var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        return cls(n, mean, var)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile by the Cornish-Fisher expansion around the normal one (error < 1e-3 for df >= 5;
    the report calls nothing below 30 per arm)."""
    z = NormalDist().inv_cdf(p)
    if math.isinf(df):
        return z
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def welch(a: Sample, b: Sample) -> Interval:
    """mean(a) - mean(b) with Welch's interval (both n >= 2)."""
    va, vb = a.var / a.n, b.var / b.n
    se = math.sqrt(va + vb)
    d = a.mean - b.mean
    if se == 0:
        return Interval(d, d, d, "Welch t")
    df = (va + vb) ** 2 / ((va ** 2 / (a.n - 1) if a.n > 1 else 0) + (vb ** 2 / (b.n - 1) if b.n > 1 else 0)
                          or math.inf)
    t = t_quantile(0.975, df)
    return Interval(d, d - t * se, d + t * se, "Welch t")


def pooled_means(strata: Iterable[tuple[Sample, Sample]], z: float = Z95) -> tuple[Interval | None, int]:
    """Stratified mean difference with Mantel-Haenszel weights n1 n0 / (n1 + n0), normal interval; strata
    with fewer than two values in an arm drop out."""
    num = wsum = var = 0.0
    dropped = 0
    for a, b in strata:
        if a.n < 2 or b.n < 2:
            dropped += a.n + b.n
            continue
        w = a.n * b.n / (a.n + b.n)
        num += w * (a.mean - b.mean)
        var += w * w * (a.var / a.n + b.var / b.n)
        wsum += w
    if wsum == 0:
        return None, dropped
    d = num / wsum
    se = math.sqrt(var) / wsum
    return Interval(d, d - z * se, d + z * se, "Mantel-Haenszel-weighted mean difference (normal)"), dropped


def nps_points(score: int) -> float:
    """One NPS response (0-10) as its contribution to the NPS: +100, 0 or -100."""
    return 100.0 if score >= 9 else (0.0 if score >= 7 else -100.0)


def verdict(n1: int, n0: int, interval: Interval | None) -> str:
    if interval is None or n1 < MIN_PER_ARM or n0 < MIN_PER_ARM:
        return NOT_ENOUGH
    if not interval.excludes_zero():
        return NO_CLEAR
    return HIGHER if interval.estimate > 0 else LOWER
