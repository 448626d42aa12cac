"""Statistics of the trials protocol: mean ± s.d. per initialisation and t-tests against the best.

Semantic Genesis (Haghighi et al., MICCAI 2020, Table 2) runs every method 10 times per target task,
reports mean ± standard deviation and marks the methods that are not significantly different from the
best one by an independent two-sample t-test at p = 0.05.

Choices, so the numbers can be reproduced:

* the standard deviation is the sample s.d. (``ddof=1``), the usual "± s.d." of repeated trials;
* the test is Student's independent two-sample t-test (``scipy.stats.ttest_ind`` with
  ``equal_var=True``, two-sided), which is what "independent two-sample t-test" denotes without
  further qualification; Welch's unequal-variance test is available with ``equal_var=False``;
* failed (diverged) trials are counted and reported but excluded from the statistics;
* the best initialisation is the one with the highest mean (lowest when ``higher_is_better=False``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from semantic_genesis.errors import DataError


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation of the finished trials of one initialisation."""

    n: int  # finished (finite) trials used in the statistics
    mean: float
    std: float  # sample s.d. (ddof=1); NaN with fewer than 2 trials
    n_failed: int = 0  # trials recorded as failed (e.g. diverged), not part of mean/std


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample s.d. (``ddof=1``) of the finite ``values``; non-finite values count as failed."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    failed = len(values) - len(finite)
    n = len(finite)
    if n == 0:
        return Summary(0, math.nan, math.nan, failed)
    mean = math.fsum(finite) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1)) if n > 1 else math.nan
    return Summary(n, mean, std, failed)


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_to_best`."""

    best: str
    summaries: dict[str, Summary]
    p_values: dict[str, float]  # vs the best; NaN for the best itself or when untestable
    not_significant: dict[str, bool]  # True: not significantly different from the best (incl. best)
    alpha: float = 0.05
    equal_var: bool = True
    higher_is_better: bool = True
    ranking: list[str] = field(default_factory=list)  # best first


def ttest(a: Sequence[float], b: Sequence[float], equal_var: bool = True) -> float:
    """Two-sided p-value of the independent two-sample t-test of ``a`` vs ``b`` (scipy ``ttest_ind``).

    Returns NaN when either sample has fewer than 2 values. Two samples with zero variance give
    p = 1 when their means are equal and p = 0 otherwise (the limit of the test).
    """
    from scipy import stats

    a = [float(v) for v in a]
    b = [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if max(a) == min(a) and max(b) == min(b):
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():  # near-identical samples: scipy warns about precision, p is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=equal_var).pvalue)


def compare_to_best(
    results: Mapping[str, Sequence[float]],
    higher_is_better: bool = True,
    alpha: float = 0.05,
    equal_var: bool = True,
) -> Comparison:
    """Summarise every initialisation and test the best one against each other.

    Args:
        results: initialisation name -> per-trial test metric (NaN / None = failed trial).
        higher_is_better: direction of the metric (AUC, IoU, Dice: True).
        alpha: significance level (paper: 0.05).
        equal_var: Student's (True, default) or Welch's (False) t-test.

    Returns:
        A :class:`Comparison`; ``not_significant[name]`` is True when ``p >= alpha`` (or the name is
        the best), i.e. the paper's "no significant difference from the best" mark.

    Raises:
        DataError: no initialisation has any finished trial.
    """
    if not results:
        raise DataError("compare_to_best: no results given")
    summaries = {name: summarize(list(vals)) for name, vals in results.items()}
    ranked = [n for n in results if summaries[n].n > 0]
    if not ranked:
        raise DataError("compare_to_best: every trial of every initialisation failed; nothing to compare")
    sign = 1.0 if higher_is_better else -1.0
    ranked.sort(key=lambda n: -sign * summaries[n].mean)
    best = ranked[0]
    finite = {n: [float(v) for v in vals if v is not None and math.isfinite(float(v))] for n, vals in results.items()}
    p_values: dict[str, float] = {}
    not_sig: dict[str, bool] = {}
    for name in results:
        if name == best:
            p_values[name] = math.nan
            not_sig[name] = True
            continue
        p = ttest(finite[best], finite[name], equal_var=equal_var)
        p_values[name] = p
        not_sig[name] = bool(math.isfinite(p) and p >= alpha)
    unranked = [n for n in results if n not in ranked]
    return Comparison(best, summaries, p_values, not_sig, alpha, equal_var, higher_is_better, ranked + unranked)
