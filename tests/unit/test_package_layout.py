"""The package mirrors the pipeline: few modules at the root, imports one way, no cycle.

Every `import` and `from ... import` of the package's own modules is read from the source
(function-level ones too: a cycle through a lazy import is still a cycle)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "soda_plugin"
STAGES = {"train", "teacher", "snapshot", "pairs", "judge", "share", "analysis", "miniature", "gad"}
# The pipeline's order: a module imports only its own area and areas of a lower rank. The
# shared layers (the format, the API client, cost records, the judging protocol) sit below
# every stage; the demo and the command line sit above all.
RANK = {
    "root": 0, "format": 0, "client": 0, "cost": 0,
    "verdict": 1,
    "teacher": 2, "snapshot": 3, "pairs": 4, "train": 5, "gad": 6, "judge": 7, "analysis": 7, "share": 8,
    "miniature": 9, "cli": 10,
}
SHARED = 0  # the shared layers may import one another (no cycle: `test_no_import_cycle`)
ENTRY_POINT = "soda_plugin"  # the package itself re-exports the plugins Axolotl names
MAX_ROOT_MODULES = 8


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else "root"


def test_at_most_eight_modules_at_the_package_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_imports_run_command_line_then_stages_then_shared_format():
    wrong = []
    for module, targets in _graph().items():
        for target in targets:
            source, dest = _area(module), _area(target)
            if dest == "cli" and source != "cli":
                wrong.append((module, target))  # nothing imports the command line
            if source in ("format", "root") and dest in STAGES and module != "soda_plugin":
                wrong.append((module, target))  # the shared format imports no stage
    assert not wrong, wrong


def wrong_way_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from an area of higher or equal rank (`RANK`), but among the shared layers; an
    unranked area is an error too."""
    wrong = []
    for module, targets in graph.items():
        if module == ENTRY_POINT:
            continue
        for target in targets:
            source, dest = _area(module), _area(target)
            low, high = RANK.get(dest, 99), RANK.get(source, -1)
            if source != dest and (low > high or (low == high and high != SHARED)):
                wrong.append((module, target))
    return sorted(wrong)


def test_every_area_has_a_rank():
    areas = {_area(module) for module in _modules()}
    assert areas <= set(RANK), sorted(areas - set(RANK))


def test_imports_follow_the_pipeline_order():
    assert not wrong_way_imports(_graph())


def test_a_wrong_way_import_is_caught(tmp_path):
    """The check itself: a teacher module importing the pair builder is flagged."""
    graph = _graph()
    graph["soda_plugin.teacher.cli"] = graph["soda_plugin.teacher.cli"] | {"soda_plugin.pairs.sources"}
    assert ("soda_plugin.teacher.cli", "soda_plugin.pairs.sources") in wrong_way_imports(graph)


def test_the_recipe_names_still_resolve():
    import soda_plugin
    from soda_plugin.train.dataset_type import default
    from soda_plugin.train.plugin import SODAPlugin

    assert soda_plugin.SODAPlugin is SODAPlugin and soda_plugin.soda is default
