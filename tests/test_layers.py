"""The project's own imports, read from the source (AST): no cycles, and no import from a lower layer to a
higher one. The layers are those docs/architecture.md's Layout section names, lowest first."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("misgan_core", "workbench", "pages")

# Lowest first. A module may import from its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("storage and helpers", ("misgan_core.errors", "misgan_core.runs", "misgan_core.grids", "misgan_core.imputers",
                             "misgan_core.device", "misgan_core.export", "misgan_core.theory")),
    ("data", ("misgan_core.data", "misgan_core.masks", "misgan_core.spec")),
    ("metrics", ("misgan_core.metrics", "misgan_core.metrics.*")),
    ("networks", ("misgan_core.models", "misgan_core.critic_gradients", "misgan_core.mask_models", "misgan_core.fast")),
    ("config", ("misgan_core.options", "misgan_core.config", "misgan_core.migrate")),
    ("training", ("misgan_core.training", "misgan_core.distributed", "misgan_core.jobs")),
    ("methods", ("misgan_core.misgan", "misgan_core.misgan_runs", "misgan_core.baselines", "misgan_core.baselines.*",
                 "misgan_core.methods", "misgan_core.methods.*", "misgan_core.demo")),
    ("catalogue", ("misgan_core.catalog", "misgan_core.evaluation", "misgan_core.curves", "misgan_core.sweep")),
    ("interface", ("misgan_core.cli", "misgan_core.__main__", "misgan_core")),
    ("app", ("workbench", "workbench.*", "pages.*")),
]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            out[_module_name(path, root)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports, at any depth of the file (lazy imports count too)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        for target in targets:
            # the longest known module the target names (an imported name may be a function, not a module)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _layer(name: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if re.fullmatch(re.escape(pattern).replace(r"\*", r"[\w.]+"), name):
                return i
    raise AssertionError(f"{name} is in no layer: add it to LAYERS (and docs/architecture.md's Layout)")


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _modules(root)
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    wrong = []
    for name, targets in _graph().items():
        for target in targets:
            if _layer(target) > _layer(name):
                wrong.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_the_engine_never_imports_streamlit_and_jobs_know_no_method() -> None:
    for name, path in _modules().items():
        if name.startswith("misgan_core"):
            tree = ast.parse(path.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert not any(n.split(".")[0] == "streamlit" for n in names), name
    jobs = _graph()["misgan_core.jobs"]
    assert not jobs & {"misgan_core.misgan", "misgan_core.baselines", "misgan_core.baselines.runs",
                       "misgan_core.methods"}


def test_the_checker_sees_a_planted_upward_import(tmp_path) -> None:
    """The checks above can fail: on a copy of the tree with a bad import planted, they do."""
    import shutil

    copy = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package)
    data = copy / "misgan_core" / "data.py"
    data.write_text(data.read_text() + "\n\ndef _planted():\n    from .catalog import METHODS  # noqa\n")
    graph = _graph(copy)
    assert "misgan_core.catalog" in graph["misgan_core.data"]  # lazy imports inside functions count
    assert _layer("misgan_core.catalog") > _layer("misgan_core.data")  # so the first test would fail


def test_architecture_layout_names_the_layers_in_order() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Layout"):]
    section = section[:section.find("\n## ", 1)]  # the Layout section only
    positions = [section.find(f"**{name}**") for name, _ in LAYERS]
    assert all(p >= 0 for p in positions), [n for (n, _), p in zip(LAYERS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
