"""The layout rules of the README, checked on the source: data flows one way (the analysis imports nothing from
training or Lightning), no import cycle between twm modules, no module imports another's private name or Hydra's
``_internal``, no issue numbers or citations of files the repository does not hold."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "twm").rglob("*.py")) + sorted((ROOT / "hydra_plugins").rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, imported names)`` of every import statement, at any depth (function-level ones too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


GRAPH = {_module(p): _imports(p) for p in SOURCES}


def test_analysis_imports_nothing_from_training_or_lightning():
    for module, imports in GRAPH.items():
        if module.startswith("twm.analysis"):
            bad = [m for m, _ in imports if m.startswith(("twm.train", "lightning", "pytorch_lightning"))]
            assert not bad, f"{module} imports {bad}"


def test_no_private_imports_across_modules_and_no_hydra_internals():
    for module, imports in GRAPH.items():
        for target, names in imports:
            assert "_internal" not in target, f"{module} imports {target}"
            private = [n for n in names if n.startswith("_") and target.startswith("twm")]
            assert not private, f"{module} imports private {private} from {target}"


def test_no_import_cycles_between_twm_modules():
    edges = {m: {t for t, _ in imps if t in GRAPH and t != m and not m.startswith(t + ".")}
             for m, imps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in edges[node]:
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(stack + [node, nxt])}"
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [])


def test_no_issue_numbers_or_citations_of_absent_files():
    files = SOURCES + sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "conf").rglob("*.yaml"))
    files += [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*"))]
    pattern = re.compile(r"\bSPEC(\.md)?\b|\bissue \d|shared/")
    for path in files:
        if path.is_file() and path != Path(__file__):
            hits = [line for line in path.read_text(errors="ignore").splitlines() if pattern.search(line)]
            assert not hits, f"{path.relative_to(ROOT)}: {hits[:3]}"
