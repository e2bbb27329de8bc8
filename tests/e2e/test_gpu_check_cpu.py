"""The GPU check (benchmarks/gpu_check/) in its --cpu form: soda's real `axolotl train` chain on a
tiny model, through the import-only stand-ins, seeing only what the user's GPU machine would have.

Every claim is read from what the runs wrote: the saved weights (checksums computed here), the
files of the check's own Axolotl plugin (probe_plugin.py: metrics, checksums of the model at
DPO's first step, the modules each `axolotl train` process imported), soda's reference store.
About 80 s on an idle 2-core machine (four `axolotl train` runs: chain, re-run, LoRA chain)."""

import json
import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.gpu_check.checksums import folder_checksums, same_weights  # noqa: E402
from benchmarks.gpu_check.standins import STANDINS  # noqa: E402

MARGIN = 1e-3


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_check")
    out, workdir = root / "out", root / "work"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--cpu",
                           "--out", str(out), "--workdir", str(workdir)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    (root / "console.txt").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return {"out": out, "work": workdir, "chain": workdir / "chain", "q0": workdir / "q0"}


def _events(probe: Path) -> list[dict]:
    return [json.loads(line) for line in (probe / "events.jsonl").read_text().splitlines()]


def _dpo_margins(events) -> list[float]:
    return [e["logs"]["rewards/margins"] for e in events
            if e["event"] == "log" and e["stage"] == "dpo" and "rewards/margins" in e["logs"]]


def test_chain_weights_q0_to_q_w_to_dpo(check):
    chain = check["chain"]
    q0, q_w, final = folder_checksums(check["q0"]), folder_checksums(chain / "warmup"), folder_checksums(chain)
    assert q_w != q0, "the warmup did not change q0"
    assert final != q_w, "DPO did not change q_w"
    for probe in ("probe_chain", "probe_rerun"):
        dpo_start = json.loads((chain / probe / "dpo_start_checksums.json").read_text())
        assert same_weights(dpo_start, q_w), f"{probe}: DPO's policy at its first step is not the saved q_w"
        assert not same_weights(dpo_start, q0)
    warmup_start = json.loads((chain / "probe_chain" / "warmup_start_checksums.json").read_text())
    assert same_weights(warmup_start, q0)


def test_dpo_step0_margin_is_zero_and_the_reference_is_not_resident(check):
    events = _events(check["chain"] / "probe_chain")
    margins = _dpo_margins(events)
    assert len(margins) == 2 and abs(margins[0]) < MARGIN and margins[-1] != 0.0, margins
    begin = next(e for e in events if e["event"] == "train_begin" and e["stage"] == "dpo")
    assert begin["ref_model_resident"] is False
    assert begin["chunked_logps"] is True
    assert begin["forwards_before_training"] == 1  # soda's pass: the 2 trained pairs in one batch of 4
    assert [e["stage"] for e in events if e["event"] == "train_begin"] == ["warmup", "dpo"]


def test_rerun_reuses_the_warmup_and_the_stored_log_probs(check):
    events = _events(check["chain"] / "probe_rerun")
    assert [e["stage"] for e in events if e["event"] == "train_begin"] == ["dpo"]
    begin = next(e for e in events if e["event"] == "train_begin")
    assert begin["forwards_before_training"] == 0
    margins = _dpo_margins(events)
    assert abs(margins[0]) < MARGIN, margins
    manifest = json.loads((check["chain"] / "warmup" / "reference_logps" / "manifest.json").read_text())
    assert manifest["datasets"]["train"]["rows"] == 2


def test_lora_chain_merges_q_w_and_the_student_and_starts_dpo_at_zero_margin(check):
    lora = check["work"] / "lora"
    margins = _dpo_margins(_events(lora / "probe_lora"))
    assert len(margins) == 2 and abs(margins[0]) < MARGIN and margins[-1] != 0.0, margins
    merged_q_w, student = folder_checksums(lora / "warmup" / "merged"), folder_checksums(lora / "merged")
    assert merged_q_w != folder_checksums(check["q0"]), "the LoRA warmup's merge left q0 unchanged"
    assert student != merged_q_w, "DPO's adapter, merged, left q_w unchanged"


def test_axolotl_ran_through_the_standins_and_the_gpu_machine_view(check):
    work = check["work"]
    site, view = work / "standins" / "site-packages", work / "gpu_view" / "site-packages"
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    files = sorted((check["chain"] / "probe_chain").glob("modules.*.json"))
    assert files, "the probe plugin wrote no module list"
    for file in files:
        modules = json.loads(file.read_text())
        for name in STANDINS:
            assert modules[name]["standin"] is True and Path(modules[name]["file"]).parent.parent == site, name
        for name in ("axolotl", "trl", "datasets"):
            assert Path(modules[name]["file"]).is_relative_to(view), modules[name]
        elsewhere = {name: m["file"] for name, m in modules.items()
                     if not any(Path(m["file"]).is_relative_to(p) for p in (site, view, REPO, stdlib))}
        assert not elsewhere, f"imported from outside the GPU machine's view: {elsewhere}"


def test_reference_pass_against_trl_precompute(check):
    report = json.loads((check["out"] / "gpu_check.json").read_text())
    values = report["phases"]["reference"]["values"]
    pairs, batch = report["settings"]["reference_pairs"], report["settings"]["precompute_ref_batch_size"]
    assert values["trl_micro_forwards"] == pairs
    assert values["soda_cold_forwards"] == math.ceil(pairs / batch)
    assert values["soda_reuse_forwards"] == 0
    assert values["max_abs_diff_vs_trl"] < 1e-3
    manifest = json.loads((check["work"] / "reference" / "store" / "manifest.json").read_text())
    assert manifest["datasets"]["train"]["rows"] == pairs


def test_table_labels_the_trl_only_rows(check):
    table = (check["out"] / "gpu_check.md").read_text()
    assert table.startswith("## soda GPU check (cpu, tiny)")
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    for row in rows:
        assert "FAILED" not in row, row
        phase, label = row.split(" | ")[:2]
        if label.startswith("phase wall s"):
            continue
        trl_only = "(TRL only, not soda's path)" in label
        assert trl_only == (phase[2:] in ("dpo_resident", "dpo_ref_kept") or "TRL precompute" in label), row
