"""The package's structure: no import circles, Ray only in the shell, one Stage per stage module,
and the stage loops free of per-stage branches."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import raydistill
from raydistill.config import STAGE_NAMES
from raydistill.pipeline.stage import Stage
from raydistill.pipeline.stages import STAGES

PACKAGE = Path(raydistill.__file__).parent


def module_name(path: Path) -> str:
    """``raydistill.pipeline.run`` of ``…/raydistill/pipeline/run.py``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: Path) -> set[str]:
    """Every module name the file imports, at its top or inside functions (imports under
    ``if TYPE_CHECKING:`` run only for type checkers and do not count)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()

    class Imports(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            for child in (node.orelse if _is_type_checking(node) else [node]):
                if child is node:
                    self.generic_visit(node)
                else:
                    self.visit(child)

        def visit_Import(self, node: ast.Import) -> None:
            names.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = (".".join(package[:len(package) - node.level + 1] + [node.module or ""])
                    .strip(".") if node.level else node.module)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)

    Imports().visit(ast.parse(path.read_text(encoding="utf-8")))
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the package's modules it imports."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {other for other in imported_names(path) if other in files and other != name}
            for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_only_the_pipeline_imports_ray():
    importers = sorted(name for name, path in
                       ((module_name(p), p) for p in PACKAGE.rglob("*.py"))
                       if any(n == "ray" or n.startswith("ray.") for n in imported_names(path)))
    assert importers and all(name.startswith("raydistill.pipeline") for name in importers)


def test_each_stage_module_exports_its_stage_record_in_run_order():
    assert tuple(stage.name for stage in STAGES) == STAGE_NAMES
    for name in STAGE_NAMES:
        stage = importlib.import_module(f"raydistill.pipeline.{name}").STAGE
        assert isinstance(stage, Stage) and stage.name == name
        assert stage in STAGES


def test_the_stage_loops_hold_no_per_stage_branches():
    for module in ("run", "plan", "resources", "preflight", "stages"):
        tree = ast.parse((PACKAGE / "pipeline" / f"{module}.py").read_text(encoding="utf-8"))
        named = [node.value for node in ast.walk(tree)
                 if isinstance(node, ast.Constant) and node.value in STAGE_NAMES]
        sections = [node.attr for node in ast.walk(tree)  # config.select, config.ingest, …
                    if isinstance(node, ast.Attribute) and node.attr in STAGE_NAMES]
        assert named == [] and sections == [], \
            f"pipeline/{module}.py names stages {named} or reads their sections {sections}"


def test_the_config_names_every_classifier_the_evaluation_can_build():
    from raydistill.classify import CLASSIFIERS, PAPER_CLASSIFIERS, TOY_CLASSIFIERS
    from raydistill.config import CLASSIFIER_NAMES

    assert CLASSIFIER_NAMES == tuple(CLASSIFIERS)
    for name in CLASSIFIER_NAMES:  # each preset sizes each classifier
        assert PAPER_CLASSIFIERS.spec(name)["name"] == TOY_CLASSIFIERS.spec(name)["name"] == name
