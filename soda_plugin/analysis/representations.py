"""Representation analysis of SODA's paper, for any set of checkpoints of one base model.

On held-out prompts, the hidden state of the last prompt token (chat template applied,
generation prompt included) is taken at every layer. Reported per model:
- linear CKA to the base model per layer, CKA(X, Y) = ||XᵀY||²_F / (||XᵀX||_F ||YᵀY||_F)
  on column-centred X, Y (n prompts x hidden size);
- last-layer activation entropy: Shannon entropy (nats) of the histogram of all
  activation values, `ENTROPY_BINS` equal-width bins over the values' range;
- last-layer kurtosis: the fourth standardised moment (Pearson's, not excess: a Gaussian
  gives 3) of all activation values.
The paper does not say its number of bins, log base or kurtosis convention; these choices
are recorded here and in the report.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..format.chat_format import render_prompt

ENTROPY_BINS = 100


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two (n, d1) and (n, d2) matrices; 1.0 for identical representations,
    NaN when either is constant over the rows (CKA is undefined there)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same number of rows, got {x.shape[0]} and {y.shape[0]}")
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0, dtype=np.float64)
    cross = np.linalg.norm(x.T @ y, "fro") ** 2
    norm = np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro")
    return float(cross / norm) if norm > 0 else float("nan")


def activation_entropy(values: np.ndarray, bins: int = ENTROPY_BINS) -> float:
    """Shannon entropy (nats) of the histogram of `values`."""
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64).ravel(), bins=bins)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def kurtosis(values: np.ndarray) -> float:
    """Fourth standardised moment (Pearson): 3 for a Gaussian, large for heavy tails."""
    v = np.asarray(values, dtype=np.float64).ravel()
    centred = v - v.mean()
    var = np.mean(centred**2)
    return float(np.mean(centred**4) / var**2) if var > 0 else 0.0


def last_token_hidden_states(model_dir: str | Path, prompts: Sequence[list[dict]], batch_size: int = 8) -> list[np.ndarray]:
    """Per transformer layer, an (n prompts, hidden) array of last-prompt-token states.

    The embedding output is left out: the last prompt token is the same for every prompt
    (the template's generation prompt), so its embedding is constant and CKA is undefined."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"  # so the last position is every prompt's last token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    per_layer: list[list[np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            texts = [render_prompt(tokenizer, p) for p in prompts[start:start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            hidden = model(**batch, output_hidden_states=True).hidden_states[1:]
            if not per_layer:
                per_layer = [[] for _ in hidden]
            for layer, states in enumerate(hidden):
                per_layer[layer].append(states[:, -1, :].float().numpy())
    del model
    return [np.concatenate(chunks) for chunks in per_layer]


@dataclass
class ModelAnalysis:
    name: str
    cka_by_layer: list[float]
    last_layer_entropy: float
    last_layer_kurtosis: float


def analyse(states: dict[str, list[np.ndarray]], base: str) -> list[ModelAnalysis]:
    """CKA to `base` per layer, and last-layer entropy and kurtosis, for every model."""
    if base not in states:
        raise KeyError(f"the base model `{base}` is not among the analysed models {sorted(states)}")
    results = []
    for name, layers in states.items():
        if len(layers) != len(states[base]):
            raise ValueError(f"`{name}` has {len(layers)} layers, the base has {len(states[base])}")
        results.append(ModelAnalysis(
            name=name,
            cka_by_layer=[linear_cka(x, y) for x, y in zip(states[base], layers)],
            last_layer_entropy=activation_entropy(layers[-1]),
            last_layer_kurtosis=kurtosis(layers[-1]),
        ))
    return results


def plot_cka(results: Sequence[ModelAnalysis], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for result in results:
        ax.plot(range(1, len(result.cka_by_layer) + 1), result.cka_by_layer, marker="o", markersize=3, label=result.name)
    ax.set_xlabel("transformer layer")
    ax.set_ylabel("linear CKA to base")
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_activation_histograms(states: dict[str, list[np.ndarray]], path: Path, bins: int = ENTROPY_BINS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, layers in states.items():
        ax.hist(layers[-1].ravel(), bins=bins, histtype="step", density=True, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("last-layer activation value")
    ax.set_ylabel("density (log)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_analysis(models: dict[str, str | Path], base: str, prompts: Sequence[list[dict]], out_dir: Path) -> list[ModelAnalysis]:
    """Hidden states of every model on `prompts`, the metrics, `analysis.json` and two PNGs."""
    from tqdm.auto import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    states = {name: last_token_hidden_states(path, prompts) for name, path in tqdm(models.items(), desc="hidden states")}
    results = analyse(states, base)
    (out_dir / "analysis.json").write_text(json.dumps({
        "base": base, "n_prompts": len(prompts), "entropy_bins": ENTROPY_BINS,
        "entropy_unit": "nats", "kurtosis": "pearson (gaussian = 3)",
        "models": [asdict(r) for r in results],
    }, indent=2))
    plot_cka(results, out_dir / "cka_by_layer.png")
    plot_activation_histograms(states, out_dir / "last_layer_activations.png")
    return results


def format_table(results: Sequence[ModelAnalysis]) -> str:
    lines = ["| model | final-layer CKA to base | last-layer entropy (nats) | last-layer kurtosis |",
             "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.cka_by_layer[-1]:.3f} | {r.last_layer_entropy:.3f} | {r.last_layer_kurtosis:.1f} |")
    return "\n".join(lines)
