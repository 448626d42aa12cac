import math

import numpy as np
import pytest
from scipy import stats as sps

from semantic_genesis.errors import DataError
from semantic_genesis.finetune import stats


def test_summarize_matches_numpy_and_counts_failures():
    values = [0.91, 0.95, 0.88, 0.97, 0.93]
    s = stats.summarize(values + [math.nan])
    assert s.n == 5 and s.n_failed == 1
    assert s.mean == pytest.approx(np.mean(values), abs=1e-15)
    assert s.std == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    assert math.isnan(stats.summarize([0.5]).std)
    assert stats.summarize([math.nan, None]).n == 0


@pytest.mark.parametrize("equal_var", [True, False])
def test_ttest_matches_scipy(equal_var):
    rng = np.random.default_rng(3)
    a = rng.normal(0.98, 0.01, 10)
    b = rng.normal(0.95, 0.03, 10)
    expected = sps.ttest_ind(a, b, equal_var=equal_var).pvalue
    assert stats.ttest(a, b, equal_var=equal_var) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(stats.ttest([1.0], b))


def test_compare_to_best_marks_not_significant():
    results = {
        "scratch": [0.90, 0.92, 0.88, 0.91, 0.89],
        "mg": [0.970, 0.975, 0.980, 0.972, 0.978],
        "sg": [0.975, 0.979, 0.981, 0.974, 0.980, math.nan],
    }
    cmp = stats.compare_to_best(results)
    assert cmp.best == "sg"
    assert cmp.ranking == ["sg", "mg", "scratch"]
    sg = [v for v in results["sg"] if not math.isnan(v)]
    assert cmp.p_values["mg"] == pytest.approx(sps.ttest_ind(sg, results["mg"]).pvalue, rel=1e-12)
    assert cmp.p_values["scratch"] == pytest.approx(sps.ttest_ind(sg, results["scratch"]).pvalue, rel=1e-12)
    assert cmp.not_significant == {"scratch": False, "mg": True, "sg": True}
    assert cmp.summaries["sg"].n_failed == 1
    assert math.isnan(cmp.p_values["sg"])


def test_compare_lower_is_better_and_all_failed():
    cmp = stats.compare_to_best({"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1, 1.9]}, higher_is_better=False)
    assert cmp.best == "a" and cmp.not_significant["b"] is False
    with pytest.raises(DataError, match="every trial"):
        stats.compare_to_best({"a": [math.nan], "b": [None]})
