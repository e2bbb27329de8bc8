"""Two runs of the miniature compared: agreement needs the same sign and overlapping intervals."""

import json

from soda_plugin.miniature import stability


def _summary(*figures):
    pairs = [("soda", "seqkd"), ("soda", "qw"), ("seqkd", "qw")]
    return {"comparisons": [{"a": a, "b": b, "exact_match": {"mean": m, "low": lo, "high": hi}}
                            for (a, b), (m, lo, hi) in zip(pairs, figures)],
            "machine": {"torch_cpu_capability": "AVX2"}}


def test_runs_agree_only_with_the_same_sign_and_overlapping_intervals():
    assert stability.agree({"mean": 2, "low": -1, "high": 5}, {"mean": 4, "low": 1, "high": 7})
    assert not stability.agree({"mean": 2, "low": -1, "high": 5}, {"mean": -1, "low": -4, "high": 2})  # sign
    assert not stability.agree({"mean": 2, "low": 1, "high": 3}, {"mean": 9, "low": 8, "high": 10})  # no overlap


def test_the_comparison_says_not_yet_stable_when_one_figure_disagrees(tmp_path):
    a = _summary((4.0, 1.0, 7.0), (0.5, -2.0, 3.0), (-3.0, -6.0, -1.0))
    b = _summary((17.0, 10.0, 24.0), (0.4, -1.0, 2.0), (-16.0, -22.0, -10.0))
    text, stable = stability.compare([a, a], ["a", "b"])
    assert stable and "agree on every comparison" in text
    text, stable = stability.compare([a, b], ["a", "b"])
    assert not stable and "not yet stable" in text and text.count("**disagree**") == 2
    assert "| SODA - SeqKD | +4.0 [+1.0, +7.0] | +17.0 [+10.0, +24.0] | **disagree** |" in text
    for name, summary in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    assert stability.main([str(tmp_path / "a" / "summary.json"), str(tmp_path / "b" / "summary.json")]) == 1
