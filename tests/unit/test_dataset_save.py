"""A one-process dataset save runs in the saving process: no spawned child, the same files."""

import os
import subprocess
import sys
from pathlib import Path

from datasets import load_from_disk

REPO = Path(__file__).resolve().parents[2]

# Run as a script: a child that `spawn` starts re-runs it as `__mp_main__`, and leaves a marker.
SAVE_SCRIPT = """
import os, sys
from pathlib import Path

if __name__ != "__main__":
    Path(os.environ["SPAWN_MARKERS"], str(os.getpid())).touch()
else:
    from datasets import Dataset

    if sys.argv[1] == "patched":
        from soda_plugin.train.host_patches import install_in_process_single_save

        install_in_process_single_save()
        install_in_process_single_save()  # idempotent: one wrapper, not two
    rows = {"input_ids": [[1, 2, i] for i in range(24)], "labels": [[-100, 2, i] for i in range(24)]}
    Dataset.from_dict(rows).save_to_disk(sys.argv[2], num_proc=1)
"""


def _save(tmp_path: Path, mode: str) -> tuple[Path, list[str]]:
    script, markers, out = tmp_path / "save.py", tmp_path / f"markers-{mode}", tmp_path / f"saved-{mode}"
    script.write_text(SAVE_SCRIPT)
    markers.mkdir()
    env = dict(os.environ, SPAWN_MARKERS=str(markers), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, str(script), mode, str(out)], env=env, check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return out, sorted(p.name for p in markers.iterdir())


def test_single_process_save_spawns_nothing_and_writes_the_same_dataset(tmp_path):
    plain, plain_children = _save(tmp_path, "plain")
    patched, patched_children = _save(tmp_path, "patched")
    assert plain_children, "the control: datasets spawns for num_proc=1 (else this test proves nothing)"
    assert patched_children == []
    assert sorted(p.name for p in plain.iterdir()) == sorted(p.name for p in patched.iterdir())
    assert load_from_disk(str(patched)).to_dict() == load_from_disk(str(plain)).to_dict()
    assert len(load_from_disk(str(patched))) == 24
