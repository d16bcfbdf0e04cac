"""The import graph: no cycles (lazy imports included), and no stage imports one that comes after it in the
pipeline (data -> models -> methods / regions -> finetune / localize / unlearn -> evaluate -> report -> pipeline
-> cli). Localization and unlearning share regions through `region.py`, never through each other."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "knowundo"
ORDER = [
    ("errors", "layout", "known_warnings"),
    ("config", "artifacts", "distributed", "placement", "executor"),
    ("data",),
    ("logits", "models"),
    ("region",),
    ("methods", "stage"),
    ("finetune", "localize", "unlearn", "attacks"),
    ("evaluate",),
    ("findings", "general_change", "replicates", "report", "preflight", "plugins"),
    ("pipeline", "api"),
    ("sweep",),
    ("cli",),
]
STAGES = ("finetune", "localize", "unlearn", "attacks")


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            )
            for imported in names:
                if imported.startswith("knowundo."):
                    target = imported.removeprefix("knowundo.")
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    if target and target != name:
                        targets.add(target)
        graph[name] = targets
    return graph


def _group(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, group in enumerate(ORDER) if top in group)


def test_the_import_graph_has_no_cycle():
    graph, state = _imports(), {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join([*path, node])
        state[node] = "open"
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_nothing_imports_a_later_stage_and_stages_do_not_import_each_other():
    for module, targets in _imports().items():
        if not module:
            continue
        for target in targets:
            assert _group(target) <= _group(module), f"{module} imports {target}, which comes after it"
            if module.split(".")[0] in STAGES:
                assert target.split(".")[0] not in STAGES, f"{module} imports the stage {target}"
    graph = _imports()
    assert not {t for t in graph["localize"] if t.startswith("methods")}, "localization must not need the methods"
