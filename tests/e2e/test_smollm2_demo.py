"""The README's main job on the real SmolLM2-135M-Instruct, in quick mode."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from axolotl_run import Run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, smollm2_dir):
    workdir = tmp_path_factory.mktemp("demo")
    shutil.copytree(REPO / "recipes", workdir / "recipes")
    (workdir / "outputs" / "models").mkdir(parents=True)
    (workdir / "outputs" / "models" / "SmolLM2-135M-Instruct").symlink_to(smollm2_dir)
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "cpu_demo.py"), "--quick", "--prompts", "12", "--max-steps", "2"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200,
    )
    (workdir / "demo.log").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return workdir, Run(proc.returncode, proc.stdout)


def test_quick_demo_chains_warmup_and_dpo_on_smollm2(demo):
    workdir, run = demo
    out = workdir / "outputs"
    rows = [json.loads(line) for line in (out / "cpu_demo" / "pairs.quick.jsonl").read_text().splitlines()]
    meta = json.loads((out / "cpu_demo" / "pairs.quick.meta.json").read_text())
    assert len(rows) + meta["dropped_identical_or_empty"] == 12 and rows
    assert set(rows[0]) == {"content", "teacher_response", "student_response"}
    assert json.loads((out / "cpu_demo" / "soda_quick" / "warmup" / "soda_stage.json").read_text())["stage"] == "warmup"
    assert (out / "cpu_demo" / "soda_quick" / "model.safetensors").is_file()
    dpo = [log for log in run.step_logs() if "rewards/margins" in log]
    sft = [log for log in run.step_logs() if "rewards/margins" not in log]
    assert len(sft) == 2 and len(dpo) == 2
    assert dpo[0]["rewards/margins"] == 0.0
    assert "Wall time per stage" in run.output


def test_smollm2_template_round_trips_in_both_views(demo):
    from transformers import AutoTokenizer

    from soda_plugin.constants import IGNORE_INDEX
    from soda_plugin.rows import SodaRow
    from soda_plugin.views import dpo_example, sft_example

    workdir, _ = demo
    tok = AutoTokenizer.from_pretrained(workdir / "outputs" / "models" / "SmolLM2-135M-Instruct")
    messages = ({"role": "user", "content": "What is 2 plus 3?"},)
    example = sft_example(tok, SodaRow(messages=messages, teacher="2 + 3 = 5."))
    full = tok.apply_chat_template([*messages, {"role": "assistant", "content": "2 + 3 = 5."}], tokenize=False)
    assert tok.decode(example["input_ids"]) == full
    trained = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tok.decode(trained) == "2 + 3 = 5.<|im_end|>"
    triple = dpo_example(tok, SodaRow(messages=messages, teacher="2 + 3 = 5.", student="It is 6."))
    prompt_ids = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert tok(triple["prompt"])["input_ids"] == prompt_ids
    assert triple["chosen"] == "2 + 3 = 5.<|im_end|>" and triple["rejected"] == "It is 6.<|im_end|>"
    # TRL appends `eos_token` to answers that do not end with it: it must be the turn end.
    assert tok.eos_token == "<|im_end|>" and triple["chosen"].endswith(tok.eos_token)
