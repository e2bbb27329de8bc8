"""What the GPU check needs on the user's GPU machine, and what it brings: the one owner of both.

`tools/gpu_wheels.sh` downloads `WHEELS` (`python -m benchmarks.gpu_check.carry wheels` prints
them); `gpu_view.py` builds, on a CPU machine, a site folder holding only
`GPU_MACHINE_PACKAGES` and `WHEELS`, so the `--cpu` dry run imports what the GPU machine would.
"""

from __future__ import annotations

import sys

# The GPU machine this check was written for (/work/shared/GPU_FACTS.md, the device notes'
# package list of 2026-11-17): Python 3.12, torch 2.11 + CUDA, transformers 5.17, and these
# distributions (normalized names). No network there.
GPU_MACHINE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi
charset-normalizer click cloudpickle colorama contourpy cycler einops filelock flatbuffers fonttools
frozenlist fsspec grpcio h11 h5py hf-xet httpcore httpx huggingface-hub idna jinja2 joblib kiwisolver
llvmlite markdown markdown-it-py markupsafe matplotlib mdurl ml-dtypes mpmath msgpack multidict narwhals
networkx numba numpy nvidia-ml-py packaging pandas pillow pip pluggy propcache protobuf psutil pyarrow
pygments pyparsing pytest python-dateutil pyyaml regex requests rich safetensors scikit-learn scipy
sentencepiece setuptools six sympy tabulate threadpoolctl tiktoken tokenizers torch tqdm transformers
triton typer typing-extensions urllib3 wrapt xxhash yarl zipp cuda-bindings cuda-pathfinder
""".split())

# name==version, each a cp312 manylinux x86-64 or pure-Python wheel. Versions are Axolotl 0.21's
# exact pins (the tested Python 3.12 stack), so the GPU run uses the tested trl/transformers/... .
WHEELS: tuple[str, ...] = (
    "axolotl==0.21.0",               # `axolotl train`: the chain under test
    "axolotl-contribs-lgpl==0.0.7",  # imported by axolotl's integrations
    "axolotl-contribs-mit==0.0.6",
    "trl==1.14.1",                   # DPOTrainer, under soda's reference pass
    "transformers==5.20.1",          # Axolotl 0.21's pin; replaces the machine's 5.17 (PYTHONPATH first)
    "tokenizers==0.23.3",            # transformers 5.20.1 needs >=0.23.1,<0.24
    "peft==0.21.2",
    "accelerate==1.15.0",
    "datasets==5.0.1",
    "dill==0.4.1",                   # datasets
    "multiprocess==0.70.19",         # datasets
    "fsspec==2025.10.0",             # datasets needs fsspec<=2026.6.0
    "regex==2026.11.19",             # transformers 5.20.1 checks regex>=2025.10.22 at import
    "pydantic==2.13.5",              # Axolotl's config schema, soda's SodaConfig
    "pydantic-core==2.46.5",
    "annotated-types==0.8.0",
    "typing-inspection==0.4.5",
    "typing-extensions==4.15.0",     # pydantic 2.13 needs >=4.14.1
    "liger-kernel==0.8.4",           # TRL checks it is installed before its chunked log-probs (soda.chunked_logps)
    "addict==2.4.0",                 # axolotl.utils.dict
    "fastcore==2.2.41",              # axolotl imports it at module level
    "fire==0.7.1",                   # axolotl/cli/train.py's entry point (`fire.Fire(do_cli)`)
    "termcolor==3.3.0",              # fire
)


def normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def wheel_names() -> set[str]:
    return {normalize(spec.split("==")[0]) for spec in WHEELS}


if __name__ == "__main__":
    if sys.argv[1:] == ["wheels"]:
        print("\n".join(WHEELS))
    else:
        sys.exit("usage: python -m benchmarks.gpu_check.carry wheels")
