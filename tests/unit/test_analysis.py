"""Representation metrics against hand-computable cases, and hidden states of a real model."""

import json

import numpy as np
import pytest

from soda_plugin.analysis import representations as analysis


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


def _last_layer_perturbed(model_dir, out_dir):
    """A copy of the model whose last decoder layer alone has noise added: every earlier layer
    computes exactly the same hidden states."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.model.layers[-1].parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))  # weights are ~0.02
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)
    return out_dir


def test_hidden_states_analysis_on_a_real_model(tiny_model_dirs, tmp_path):
    prompts = [[{"role": "user", "content": f"What is {i} plus {2 * i + 1}?"}] for i in range(8)]
    base = tiny_model_dirs["llama"]
    other = _last_layer_perturbed(base, tmp_path / "other")
    results = analysis.run_analysis({"base": base, "other": other}, "base", prompts, tmp_path / "analysis")
    saved = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    n_layers = len(saved["models"][0]["cka_by_layer"])
    from transformers import AutoConfig

    assert n_layers == AutoConfig.from_pretrained(base).num_hidden_layers
    assert all(c == pytest.approx(1.0) for c in results[0].cka_by_layer)  # the base against itself
    *same, changed = results[1].cka_by_layer
    assert same and all(c == pytest.approx(1.0) for c in same)  # the layers before the noise are untouched
    assert changed < 0.99
    assert saved["models"][1]["cka_by_layer"] == pytest.approx(results[1].cka_by_layer)
    assert (tmp_path / "analysis" / "cka_by_layer.png").stat().st_size > 1000
    assert (tmp_path / "analysis" / "last_layer_activations.png").read_bytes()[:4] == b"\x89PNG"
    assert "| other |" in analysis.format_table(results)
