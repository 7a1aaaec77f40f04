"""The one rule every verdict of the book uses, and how a number is written.

"How to read the numbers" on the introduction states it for readers:
- A difference of two means is beyond seed-to-seed noise when it exceeds NOISE_Z standard
  errors of the difference, sqrt(s1^2/n1 + s2^2/n2). A number of the original report is one
  run; its noise is taken to be that of one of our seeds of the same setting, so against it
  the standard error is s * sqrt(1/n + 1). With one seed no spread is known, and the verdict
  says so.
- Its size: accuracies in points (hundredths), losses relative to the number compared with;
  below SIZE_STEPS[kind][0] is small, below SIZE_STEPS[kind][1] clear, beyond that large.
"""

import math
from dataclasses import dataclass

import pandas as pd

from lab2.core.summary import METRICS

NOISE_Z = 2.0  # standard errors of a difference that count as seed-to-seed noise
# Size steps: (small below, clear below); large from the second. Accuracy in absolute terms
# (0.01 = one point), loss relative to the number compared with.
SIZE_STEPS = {"accuracy": (0.01, 0.03), "loss": (0.05, 0.20)}
SMALL, CLEAR, LARGE, NO_DIFFERENCE = "small", "clear", "large", "none"
# The reader's words for a number whose runs are missing, wherever a page shows one.
NOT_MEASURED = "not measured"


def measured(value) -> bool:
    """Whether a number was measured: None and NaN stand for one whose runs are missing."""
    return not (pd.api.types.is_scalar(value) and pd.isna(value))


def number(value: float, digits: int = 3, sign: bool = False) -> str:
    """A number to `digits` decimals; one that would round to zero but is not keeps one significant
    digit (0.0004, not 0.000), so that a real but small value never reads as none."""
    if not measured(value):
        return NOT_MEASURED
    if value != 0 and round(value, digits) == 0:
        digits = -math.floor(math.log10(abs(value)))  # down to the first significant digit
    return f"{value:{'+' if sign else ''}.{digits}f}"


def plus_minus(mean: float, std: float, digits: int = 3) -> str:
    """'0.561 ± 0.004', or '0.561' when there is no spread, or NOT_MEASURED when there is no number."""
    if not measured(mean):
        return NOT_MEASURED
    return number(mean, digits) if pd.isna(std) else f"{number(mean, digits)} ± {number(std, digits)}"


@dataclass(frozen=True)
class Estimate:
    """One metric over the seeds of one setting: mean, sample std (nan from one seed), count."""

    mean: float
    std: float
    count: int

    @classmethod
    def of(cls, values) -> "Estimate":
        values = pd.Series(values, dtype=float).dropna()
        return cls(float(values.mean()), float(values.std()) if len(values) > 1 else math.nan, len(values))

    @property
    def has_spread(self) -> bool:
        return self.count > 1 and not math.isnan(self.std)

    def format(self, digits: int = 3) -> str:
        return plus_minus(self.mean, self.std, digits)


def size_of(difference: float, reference: float, metric: str) -> str:
    """How large a difference is (small / clear / large, or none), by SIZE_STEPS; `metric` names its kind
    (a metric of lab2.core.summary.METRICS, or any name containing 'loss' for a loss-like quantity)."""
    if difference == 0:
        return NO_DIFFERENCE
    kind = METRICS[metric].kind if metric in METRICS else "loss" if "loss" in metric else "accuracy"
    magnitude = abs(difference) / abs(reference) if kind == "loss" and reference else abs(difference)
    small, clear = SIZE_STEPS[kind]
    return SMALL if magnitude < small else CLEAR if magnitude < clear else LARGE


@dataclass(frozen=True)
class Verdict:
    """A difference judged by the noise rule: how large, and whether seeds tell it from noise."""

    difference: float  # a - b; nan when either side is missing
    noise: float  # standard error of the difference; nan with one seed
    size: str  # small, clear, large or none (SIZE_STEPS)

    @property
    def measured(self) -> bool:
        return not math.isnan(self.difference)

    @property
    def beyond_noise(self) -> bool | None:
        """True/False by NOISE_Z standard errors; None when the noise is unknown (one seed) or a side is missing."""
        if not self.measured or math.isnan(self.noise):
            return None
        return abs(self.difference) > NOISE_Z * self.noise

    @property
    def text(self) -> str:
        """'large, beyond noise', 'small, within noise', 'clear; one seed, noise unknown', or NOT_MEASURED."""
        if not self.measured:
            return NOT_MEASURED
        if self.size == NO_DIFFERENCE:
            return "no difference"
        beyond = self.beyond_noise
        if beyond is None:
            return f"{self.size}; one seed, noise unknown"
        return f"{self.size}, {'beyond' if beyond else 'within'} noise"

    def shown(self, digits: int = 3) -> str:
        """'+0.011 (clear, beyond noise)', '0 (no difference)' for an exact zero, or NOT_MEASURED."""
        if not self.measured:
            return NOT_MEASURED
        return f"{'0' if self.difference == 0 else number(self.difference, digits, sign=True)} ({self.text})"


def judge_difference(a: Estimate, b: Estimate, metric: str = "test_acc") -> Verdict:
    """a - b judged by the noise rule (two settings of this reproduction)."""
    difference = a.mean - b.mean
    noise = math.sqrt(a.std ** 2 / a.count + b.std ** 2 / b.count) if a.has_spread and b.has_spread else math.nan
    return Verdict(difference, noise, NO_DIFFERENCE if math.isnan(difference) else size_of(difference, b.mean, metric))


def judge_against_original(ours: Estimate, original: float, metric: str, original_runs: int = 1) -> Verdict:
    """ours - original judged by the noise rule: the original's runs are as noisy as our seeds."""
    difference = ours.mean - original
    noise = ours.std * math.sqrt(1 / ours.count + 1 / original_runs) if ours.has_spread else math.nan
    return Verdict(difference, noise, NO_DIFFERENCE if math.isnan(difference) else size_of(difference, original, metric))


def agrees(verdict: Verdict) -> bool | None:
    """Whether two numbers agree: their difference is small (or none), or within noise. None when it is
    larger than small and one seed cannot tell it from noise, or a side is missing."""
    if not verdict.measured:
        return None
    if verdict.size in (NO_DIFFERENCE, SMALL):
        return True
    return None if verdict.beyond_noise is None else not verdict.beyond_noise


def difference_phrase(a: Estimate, b: Estimate, digits: int = 3) -> str:
    """a against b in words: '0.012 higher than', '0.012 lower than' or 'the same as'."""
    if not (measured(a.mean) and measured(b.mean)):
        return NOT_MEASURED
    difference = a.mean - b.mean
    if difference == 0:
        return "the same as"
    return f"{number(abs(difference), digits)} {'higher' if difference > 0 else 'lower'} than"


def noise_phrase(a: Estimate, b: Estimate) -> str:
    """Whether seeds tell a and b apart, in words."""
    if not (measured(a.mean) and measured(b.mean)):
        return "the runs to tell them apart are missing"
    verdict = judge_difference(a, b)
    if verdict.beyond_noise is None:
        return f"the difference is {verdict.size}; with one seed per setting it cannot be told from seed-to-seed noise"
    return f"the difference is {verdict.text.replace('noise', 'seed-to-seed noise')}"
