"""q_w's reference log-probs of each pair, on disk, keyed by the pair's tokens.

SODA's reference (q_w) and pairs are both fixed, so `ref_chosen_logps` / `ref_rejected_logps`
of a pair are computed once and reused by every DPO run on the same q_w: a beta sweep, a
resumed or re-run stage, a second recipe on the same pairs.

Layout of a store folder:

- `manifest.json`: what the values are log-probs *under*: the reference weights' identity
  (`reference_cache.weights_identity`), the warmup marker's hash, and every setting that
  changes the numbers (TRL's `max_length` / `truncation_mode` / `ld_alpha`, the dtype). A
  store whose manifest differs holds another reference's values.
- `part-*.jsonl`: one line per scored pair, `{"k": row_key, "c": ref_chosen, "r": ref_rejected}`,
  appended and fsynced batch by batch, so a killed pass keeps every finished batch and a
  re-run scores only the rest. A torn last line (killed mid-write) is counted and ignored.

A row's key is the SHA-256 of the token ids TRL trains on (`prompt_ids`, `chosen_ids`,
`rejected_ids` after its `_prepare_dataset`): the same pair tokenized the same way finds
its values whatever the file, row order or subset it comes from.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..log import get_logger

LOG = get_logger(__name__)

STORE_FORMAT = 1
MANIFEST = "manifest.json"
PART_GLOB = "part-*.jsonl"


def row_key(prompt_ids: Sequence[int], chosen_ids: Sequence[int], rejected_ids: Sequence[int]) -> str:
    payload = json.dumps([list(prompt_ids), list(chosen_ids), list(rejected_ids)], separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def identity_key(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]


class ReferenceStoreMismatchError(ValueError):
    """The store holds log-probs of another reference (or other settings) than this run's."""


def describe_mismatch(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(changed) or "(no field differs)"


@dataclass
class StoreContents:
    values: dict[str, tuple[float, float]] = field(default_factory=dict)
    torn_lines: int = 0
    parts: int = 0


@dataclass
class ReferenceStore:
    directory: Path

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # written atomically, so only a hand edit gets here: treated as no store

    def check(self, identity: Mapping[str, Any]) -> None:
        """Raise `ReferenceStoreMismatchError` unless the store is empty or made under `identity`."""
        manifest = self.read_manifest()
        if manifest is None:
            if any(self.directory.glob(PART_GLOB)):
                raise ReferenceStoreMismatchError(f"{self.directory} has log-prob parts but no readable {MANIFEST}")
            return
        if manifest.get("identity") != dict(identity):
            raise ReferenceStoreMismatchError(describe_mismatch(manifest.get("identity") or {}, identity))

    def read(self) -> StoreContents:
        contents = StoreContents()
        for part in sorted(self.directory.glob(PART_GLOB)):
            contents.parts += 1
            with part.open("r", encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                        contents.values[entry["k"]] = (float(entry["c"]), float(entry["r"]))
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        contents.torn_lines += 1
        return contents

    def reset(self, identity: Mapping[str, Any]) -> None:
        """Empty the store and write the manifest of `identity` (atomically)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for part in self.directory.glob(PART_GLOB):
            part.unlink()
        self.write_manifest(identity)

    def write_manifest(self, identity: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._save_manifest({"format": STORE_FORMAT, "key": identity_key(identity), "identity": dict(identity)})

    def _save_manifest(self, manifest: Mapping[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    def note_dataset(self, name: str, rows: int, fingerprint: str) -> None:
        """Record in the manifest which pairs a DPO run's `name` set was (its rows' keys' hash)."""
        manifest = self.read_manifest()
        if manifest is None:
            return
        manifest.setdefault("datasets", {})[name] = {"rows": rows, "fingerprint": fingerprint}
        self._save_manifest(manifest)

    def writer(self) -> "PartWriter":
        self.directory.mkdir(parents=True, exist_ok=True)
        # A new file per pass: appending after a line torn by a kill would corrupt the next one.
        name = f"part-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        return PartWriter(self.directory / name)


class PartWriter:
    """Appends scored pairs to one part file; each `write` is on disk when it returns."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = path.open("x", encoding="utf-8")
        self.rows = 0

    def write(self, keys: Iterable[str], chosen: Iterable[float], rejected: Iterable[float]) -> None:
        lines = [json.dumps({"k": k, "c": float(c), "r": float(r)}) + "\n" for k, c, r in zip(keys, chosen, rejected)]
        self.handle.write("".join(lines))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.rows += len(lines)

    def close(self) -> None:
        self.handle.close()
        if self.rows == 0:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["ReferenceStore", "PartWriter", "StoreContents", "ReferenceStoreMismatchError", "row_key", "identity_key",
           "describe_mismatch", "STORE_FORMAT"]
