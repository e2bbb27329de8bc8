"""The GPT-4o Score arithmetic against hand-computed cases."""

import pytest

from soda_plugin.verdict.scoring import (Order, benchmark_score, bootstrap_interval, order_score, prompt_score,
                                       student_and_reference)


def test_order_score_is_student_share():
    assert order_score(8, 8) == 0.5
    assert order_score(6, 9) == pytest.approx(0.4)
    assert order_score(10, 1) == pytest.approx(10 / 11)


def test_verdict_positions_map_to_student_and_reference():
    assert student_and_reference(Order.STUDENT_FIRST, (7, 3)) == (7, 3)
    assert student_and_reference(Order.REFERENCE_FIRST, (7, 3)) == (3, 7)


def test_prompt_score_averages_both_orders():
    # student first: S=8, R=8 -> 0.5; reference first: R=9, S=6 -> 0.4
    assert prompt_score(student_first=(8, 8), reference_first=(9, 6)) == pytest.approx(0.45)


def test_order_averaging_cancels_a_judge_that_favours_position_one():
    # The judge adds 2 to whichever answer it sees first: alone each order is biased.
    assert prompt_score(student_first=(7, 5), reference_first=(7, 5)) == pytest.approx(0.5)
    assert prompt_score(student_first=(9, 5), reference_first=(7, 7)) == pytest.approx((9 / 14 + 7 / 14) / 2)


def test_benchmark_score_is_100_times_the_mean():
    values = [0.5, 1 / 3, 5 / 9]
    result = benchmark_score(values, resamples=200, seed=0)
    assert result.score == pytest.approx(100 * (0.5 + 1 / 3 + 5 / 9) / 3)
    assert result.n_scored == 3
    # the interval lies between the smallest and largest prompt score (floating point aside)
    assert 100 / 3 - 1e-9 <= result.ci_low <= result.score <= result.ci_high <= 100 * 5 / 9 + 1e-9


def test_bootstrap_is_deterministic_under_a_seed_and_moves_with_it():
    values = [0.31, 0.52, 0.47, 0.66, 0.5, 0.38, 0.59, 0.44]
    first = bootstrap_interval(values, resamples=500, seed=7)
    assert bootstrap_interval(values, resamples=500, seed=7) == first
    assert bootstrap_interval(values, resamples=500, seed=8) != first
    assert bootstrap_interval(values, resamples=50, seed=7) != first


def test_constant_scores_and_a_single_prompt_have_a_zero_width_interval():
    assert benchmark_score([0.4, 0.4, 0.4], resamples=100).ci_low == pytest.approx(40.0)
    single = benchmark_score([0.45], resamples=10)
    assert (single.score, single.ci_low, single.ci_high) == pytest.approx((45.0, 45.0, 45.0))


def test_no_scored_prompt_gives_no_score_and_bad_resamples_are_refused():
    assert benchmark_score([]).score is None and benchmark_score([]).n_scored == 0
    with pytest.raises(ValueError, match="`resamples` must be >= 1"):
        benchmark_score([0.5], resamples=0)
