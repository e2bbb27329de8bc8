"""The model a snapshot benchmark runs: a tiny random Qwen2 (`--tiny`), SmolLM2 converted on
first use (the default folder), or the folder given. A helper, not a benchmark."""

import sys
from pathlib import Path

DEFAULT_MODEL = "outputs/models/SmolLM2-135M-Instruct"


def resolve_model(tiny: bool, model: str, workdir: str) -> str:
    if tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_models import build_model

        # hidden 128 over 4 heads: vLLM's CPU attention needs a head_dim of 32 or more.
        return str(build_model("qwen2", Path(workdir) / "tiny-qwen2", hidden_size=128, intermediate_size=256))
    if model == DEFAULT_MODEL:
        from soda_plugin.smollm2 import convert_smollm2

        return str(convert_smollm2(model))
    return model
