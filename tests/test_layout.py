"""The package's shape, checked from its source: no import cycle, contract file names only in rundir.py."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "nnrun"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def top_level_imports(name: str, path: Path) -> set[str]:
    """The nnrun modules that ``name`` imports when it is loaded (imports inside functions are lazy on purpose)."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in MODULES else node.module)
    return {m for m in out if m in MODULES and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (found := visit(nxt, trail + [nxt])):
                return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle():
    graph = {name: top_level_imports(name, path) for name, path in MODULES.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_run_directory_file_names_are_defined_only_in_rundir():
    from nnrun import rundir

    names = {rundir.CONFIG, rundir.RUN, rundir.HISTORY, rundir.METRICS, rundir.MODEL, rundir.PREPROCESSING,
             rundir.SUMMARY, rundir.CURVES, rundir.LOG, rundir.EVALUATION, rundir.REPORT, rundir.SWEEP,
             rundir.LAST_CHECKPOINT, rundir.BEST_CHECKPOINT, rundir.LAST_CHECKPOINT_STATE, rundir.RUN_LOCK}
    # names built in f-strings, e.g. f"confusion_matrix{suffix}.csv"
    stems = ("confusion_matrix", "misclassified", "evaluation", "checkpoints/", "sweep-")
    found = []
    for name, path in MODULES.items():
        if name == "nnrun.rundir":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.JoinedStr):
                texts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
                found += [f"{path.relative_to(ROOT)}:{node.lineno} f-string {t!r}" for t in texts
                          if any(t.startswith(stem) for stem in stems)]
    assert not found, found


def test_the_file_name_check_can_fail(tmp_path, monkeypatch):
    (tmp_path / "nnrun").mkdir()
    (tmp_path / "nnrun" / "leaky.py").write_text('PATH = "metrics.json"\nNAME = f"confusion_matrix{1}.png"\n')
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "MODULES", {"nnrun.leaky": tmp_path / "nnrun" / "leaky.py"})
    try:
        test_run_directory_file_names_are_defined_only_in_rundir()
    except AssertionError as exc:
        assert "'metrics.json'" in str(exc) and "'confusion_matrix'" in str(exc)
    else:
        raise AssertionError("the check passed on a module that names metrics.json")


def test_no_module_is_much_over_400_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert max(sizes.values()) <= 450, sorted(sizes.items(), key=lambda item: -item[1])[:3]
