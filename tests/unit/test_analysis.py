"""Representation metrics against hand-computable cases, and hidden states of a real model."""

import json

import numpy as np
import pytest

from soda_plugin import analysis


def test_cka_is_one_for_the_same_representation_up_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert analysis.linear_cka(x, x) == pytest.approx(1.0)
    assert analysis.linear_cka(x, 3.0 * x @ rotation + 5.0) == pytest.approx(1.0)


def test_cka_hand_computed_case():
    # Centred x = [-1, 1], y = [-1, 1] in column 0 and [1, -1] in column 1:
    # ||x^T y||^2 = 2^2 + 2^2 = 8, ||x^T x|| = 2, ||y^T y|| = ||[[2,-2],[-2,2]]|| = 4 -> 8 / 8 = 1.
    x = np.array([[0.0], [2.0]])
    y = np.array([[0.0, 1.0], [2.0, -1.0]])
    assert analysis.linear_cka(x, y) == pytest.approx(1.0)
    # Independent columns: x = [1,-1,1,-1]-like vs y = [1,1,-1,-1]-like are orthogonal -> 0.
    x = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    y = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    assert analysis.linear_cka(x, y) == pytest.approx(0.0)


def test_cka_is_undefined_for_constant_rows_and_needs_equal_counts():
    assert np.isnan(analysis.linear_cka(np.ones((3, 2)), np.zeros((3, 2))))
    with pytest.raises(ValueError, match="same number of rows"):
        analysis.linear_cka(np.zeros((3, 2)), np.zeros((4, 2)))


def test_entropy_of_a_uniform_histogram_is_log_bins():
    values = np.arange(1000) + 0.5  # 10 values in each of 100 equal bins
    assert analysis.activation_entropy(values, bins=100) == pytest.approx(np.log(100))
    assert analysis.activation_entropy(np.array([1.0, 1.0, 1.0]), bins=10) == pytest.approx(0.0)


def test_kurtosis_conventions():
    assert analysis.kurtosis(np.array([-1.0, 1.0] * 50)) == pytest.approx(1.0)  # two-point: minimal
    gaussian = np.random.default_rng(0).normal(size=200_000)
    assert analysis.kurtosis(gaussian) == pytest.approx(3.0, abs=0.05)
    heavy = np.concatenate([np.zeros(999), [100.0]])
    assert analysis.kurtosis(heavy) > 900


def test_hidden_states_analysis_on_a_real_model(tiny_model_dirs, tmp_path):
    prompts = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(5)]
    results = analysis.run_analysis({"base": tiny_model_dirs["llama"], "other": tiny_model_dirs["llama"]},
                                    "base", prompts, tmp_path)
    saved = json.loads((tmp_path / "analysis.json").read_text())
    n_layers = len(saved["models"][0]["cka_by_layer"])
    from transformers import AutoConfig

    assert n_layers == AutoConfig.from_pretrained(tiny_model_dirs["llama"]).num_hidden_layers
    assert all(c == pytest.approx(1.0) for c in results[1].cka_by_layer)  # same weights, same states
    assert (tmp_path / "cka_by_layer.png").stat().st_size > 1000
    assert (tmp_path / "last_layer_activations.png").read_bytes()[:4] == b"\x89PNG"
    assert "| other |" in analysis.format_table(results)
