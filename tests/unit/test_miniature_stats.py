"""`soda_plugin.miniature.stats`: Wilson and paired two-level bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from soda_plugin.miniature import stats


def shifted_pair(seeds: int = 3, prompts: int = 240, flips: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """a: random 0/1; b: a with `flips` of each row's ones turned to zero (a - b = flips / prompts)."""
    rng = np.random.default_rng(seed)
    a = (rng.random((seeds, prompts)) < 0.6).astype(float)
    b = a.copy()
    for row in b:
        row[rng.choice(np.flatnonzero(row == 1), size=flips, replace=False)] = 0.0
    return a, b


@pytest.mark.parametrize("k,n", [(0, 240), (1, 240), (120, 240), (239, 240), (240, 240), (0, 1), (1, 1), (3, 7)])
def test_wilson_inside_0_100(k, n):
    low, high = stats.wilson_interval(k, n)
    assert 0.0 <= low <= 100.0 * k / n <= high <= 100.0
    assert low < high


def test_wilson_edges():
    low, high = stats.wilson_interval(0, 240)
    assert low == 0.0 and high == pytest.approx(1.58, abs=0.01)
    low, high = stats.wilson_interval(240, 240)
    assert low < 100.0 and high == 100.0
    assert low == pytest.approx(100.0 - 1.58, abs=0.01)


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError):
        stats.wilson_interval(0, 0)
    with pytest.raises(ValueError):
        stats.wilson_interval(5, 4)


def test_percent_interval_single_run():
    values = np.array([1] * 60 + [0] * 180)
    interval = stats.percent_interval(values)
    assert interval.mean == 25.0
    assert (interval.low, interval.high) == stats.wilson_interval(60, 240)
    assert interval.method == "Wilson score" and interval.resamples == 0
    assert (interval.n_seeds, interval.n_prompts) == (1, 240)


def test_interval_format_and_dict():
    interval = stats.Interval(mean=12.34, low=4.5, high=20.06, resamples=10, n_seeds=3, n_prompts=240,
                              method=stats.TWO_LEVEL)
    assert interval.format() == "12.3 [4.5, 20.1]"
    assert interval.format(2) == "12.34 [4.50, 20.06]"
    assert interval.to_dict() == {"mean": 12.34, "low": 4.5, "high": 20.06, "resamples": 10, "n_seeds": 3,
                                  "n_prompts": 240, "method": stats.TWO_LEVEL}


def test_identical_arrays_give_zero_interval():
    a, _ = shifted_pair()
    interval = stats.paired_difference(a, a.copy(), resamples=2000)
    assert (interval.mean, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_known_shift_inside_interval_and_excludes_zero():
    a, b = shifted_pair()
    interval = stats.paired_difference(a, b, resamples=4000)
    assert interval.mean == pytest.approx(12.5)
    assert 0.0 < interval.low < 12.5 < interval.high
    assert interval.method == stats.TWO_LEVEL
    assert (interval.n_seeds, interval.n_prompts, interval.resamples) == (3, 240, 4000)


def test_deterministic_by_seed():
    a, b = shifted_pair()
    first = stats.paired_difference(a, b, resamples=1000, seed=7)
    assert stats.paired_difference(a, b, resamples=1000, seed=7) == first
    # Real-valued scores, so percentiles of two different draws cannot coincide by discreteness.
    scores = np.random.default_rng(2).random((3, 240))
    first = stats.bootstrap_mean(scores, resamples=1000, seed=3, scale=1.0)
    assert stats.bootstrap_mean(scores, resamples=1000, seed=3, scale=1.0) == first
    other = stats.bootstrap_mean(scores, resamples=1000, seed=4, scale=1.0)
    assert other.mean == first.mean
    assert (other.low, other.high) != (first.low, first.high)
    diff = stats.paired_difference(scores, scores[::-1], resamples=1000, seed=3, scale=1.0)
    assert diff != stats.paired_difference(scores, scores[::-1], resamples=1000, seed=4, scale=1.0)


def unpaired_width(a: np.ndarray, b: np.ndarray, resamples: int, seed: int = 0) -> float:
    """Width of a 95% interval of mean(a) - mean(b) with independent seed and prompt draws for a and b."""
    rng = np.random.default_rng(seed)

    def means(x: np.ndarray) -> np.ndarray:
        s = rng.integers(0, x.shape[0], size=(resamples, x.shape[0]))
        p = rng.integers(0, x.shape[1], size=(resamples, x.shape[1]))
        return np.array([x[s[r]][:, p[r]].mean() for r in range(resamples)])

    low, high = np.percentile(100.0 * (means(a) - means(b)), [2.5, 97.5])
    return float(high - low)


def test_pairing_narrows_the_interval():
    rng = np.random.default_rng(1)
    # Prompt difficulty shared by both models: they are right on mostly the same prompts.
    easy = rng.random(240) < 0.5
    b = np.tile(easy, (3, 1)).astype(float)
    a = b.copy()
    noise = rng.random(a.shape) < 0.05
    a[noise] = 1.0 - a[noise]
    paired = stats.paired_difference(a, b, resamples=2000)
    assert paired.high - paired.low < 0.5 * unpaired_width(a, b, resamples=2000)


def test_shape_mismatch_raises_naming_shapes():
    with pytest.raises(ValueError, match=r"\(3, 240\).*\(2, 240\)"):
        stats.paired_difference(np.zeros((3, 240)), np.zeros((2, 240)))
    with pytest.raises(ValueError):
        stats.per_seed_differences(np.zeros((3, 5)), np.zeros((3, 6)))
    with pytest.raises(ValueError):
        stats.discordant(np.zeros((3, 5)), np.zeros((3, 6)))


def test_bootstrap_mean_of_constant_data():
    zeros = stats.bootstrap_mean(np.zeros((3, 240)), resamples=500)
    assert (zeros.mean, zeros.low, zeros.high) == (0.0, 0.0, 0.0)
    ones = stats.bootstrap_mean(np.ones((3, 240)), resamples=500)
    assert (ones.mean, ones.low, ones.high) == (100.0, 100.0, 100.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_of_0_1_data_stays_in_0_100(seed):
    rng = np.random.default_rng(seed)
    for p in (0.002, 0.5, 0.998):
        interval = stats.bootstrap_mean((rng.random((3, 240)) < p).astype(float), resamples=1000, seed=seed)
        assert 0.0 <= interval.low <= interval.mean <= interval.high <= 100.0


def test_single_seed_resamples_prompts_only():
    a, b = shifted_pair(seeds=1)
    interval = stats.bootstrap_mean(a[0], resamples=1000)
    assert interval.method == stats.PROMPTS_ONLY and interval.n_seeds == 1
    assert interval.low < interval.mean < interval.high
    diff = stats.paired_difference(a, b, resamples=1000)
    assert diff.method == stats.PROMPTS_ONLY
    assert 0.0 < diff.low < 12.5 < diff.high


def test_scale_one_for_real_scores():
    scores = np.full((2, 10), 7.0)
    interval = stats.bootstrap_mean(scores, resamples=200, scale=1.0)
    assert (interval.mean, interval.low, interval.high) == (7.0, 7.0, 7.0)


def test_per_seed_differences():
    a, b = shifted_pair()
    per_seed = stats.per_seed_differences(a, b, resamples=1000, seed=0, scale=100.0)
    assert len(per_seed) == 3
    for interval in per_seed:
        assert interval.mean == pytest.approx(12.5)
        assert interval.method == stats.PROMPTS_ONLY and interval.n_seeds == 1
        assert 0.0 < interval.low < 12.5 < interval.high
    assert per_seed[1] == stats.paired_difference(a[1:2], b[1:2], resamples=1000, seed=0)


def test_discordant_counts():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])
    b = np.array([[1, 0, 1, 0], [0, 0, 1, 1]])
    assert stats.discordant(a, b) == {"a_only": 2, "b_only": 2, "both": 2, "neither": 2}


def test_ten_thousand_resamples_the_report_default():
    """The report's default, 10,000 resamples (several chunks of `_CHUNK_CELLS` here).
    Their speed is a figure of `benchmarks/bootstrap_intervals.py`, not asserted here."""
    a, b = shifted_pair()
    interval = stats.paired_difference(a, b)
    assert interval.resamples == 10000 and interval.method == stats.TWO_LEVEL
    assert interval.mean == pytest.approx(12.5)
    assert 0.0 < interval.low < 12.5 < interval.high
    assert interval == stats.paired_difference(a, b, resamples=10000, seed=0)  # the seed fixes every draw
