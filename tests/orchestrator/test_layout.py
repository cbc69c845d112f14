"""The layout holds: layers import downward only, no cycles between them, no module too long.

Every `import` in the three packages is read with `ast` — top-level, inside functions and under
`TYPE_CHECKING` alike, since a lazy import is still a dependency — and mapped to its layer.
A new arrow the wrong way fails with the file, the line and the rule it breaks.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "triggers", "sensors")

#: The modules at the top of `orchestrator/`: core types every layer may use.
CORE = {
    "changes",
    "clock",
    "config",
    "crashpoints",
    "descriptors",
    "errors",
    "lazy",
    "quickinit",
    "policy",
    "settingchecks",
    "signing",
    "alertconfig",
    "state",
}

#: What the engine is built on; the front ends (api, daemon, cli) may use it all.
_BELOW_SCHEDULING = {
    "core",
    "airflow_compat",
    "store",
    "authoring",
    "loading",
    "execution",
    "waiting",
    "alerts",
    "triggers.base",
}
#: Which layers each layer may import (besides itself). Read it bottom-up: the lower a layer,
#: the less it knows. `orchestrator` is the package's facade (`from orchestrator import DAG`).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "alerts": {"core", "store", "authoring"},
    "store": {"core"},
    "authoring": {"core", "triggers.base"},
    "loading": {"core", "authoring", "triggers.base", "airflow_compat"},
    # Airflow's DAG API over ours; the loader maps `import airflow` onto it while it imports.
    # It reads Variables from the store (`Variable.get` in DAG files and tasks).
    "airflow_compat": {"core", "store", "authoring", "triggers.base", "triggers", "sensors"},
    "execution": {"core", "authoring", "loading", "triggers.base", "airflow_compat"},
    "waiting": {"core", "store", "triggers.base"},
    "triggers.base": {"core", "store"},
    "triggers": {"core", "store", "triggers.base"},
    "sensors": {"core", "authoring", "triggers.base", "triggers"},
    "scheduling": _BELOW_SCHEDULING,
    # Metrics read the engine's state at scrape time, so they sit above it; the API serves them.
    "metrics": {"scheduling", *_BELOW_SCHEDULING},
    "api": {"scheduling", "metrics", *_BELOW_SCHEDULING},
    "ui": {"api", "metrics", "scheduling", *_BELOW_SCHEDULING},
    "daemon": {"scheduling", "metrics", "api", "ui", *_BELOW_SCHEDULING},
    "cli": {"scheduling", "metrics", "api", "daemon", "ui", *_BELOW_SCHEDULING},
    "facade": {"core", "authoring", "scheduling", "lazy", "cli"},
    # The sample DAG file `orchestrator init` copies: it imports what any DAG file may.
    "templates": {"facade", "core", "authoring", "triggers.base", "triggers", "sensors"},
}


@dataclass(frozen=True)
class Arrow:
    source: str  # the importing file, relative to the repository
    line: int
    target: str  # the module imported
    source_layer: str
    target_layer: str

    def __str__(self) -> str:
        return (
            f"{self.source}:{self.line} imports {self.target}: "
            f"{self.source_layer} may not import {self.target_layer}"
        )


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of ours, or None for anything else."""
    parts = module.split(".")
    if parts[0] == "triggers":
        return "triggers.base" if parts[1:2] == ["base"] else "triggers"
    if parts[0] == "sensors":
        return "sensors"
    if parts[0] != "orchestrator":
        return None
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "facade"
    return "core" if parts[1] in CORE else parts[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """Every module `path` imports, with its line; `from pkg import mod` names the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                is_module = _module_path(submodule) is not None
                yield node.lineno, submodule if is_module else base


def _module_path(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def source_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def arrows() -> Iterator[Arrow]:
    for path in source_files():
        source_layer = layer_of(module_name(path))
        assert source_layer is not None
        for line, target in imports_of(path):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer != source_layer:
                relative = str(path.relative_to(ROOT))
                yield Arrow(relative, line, target, source_layer, target_layer)


def test_every_layer_imports_only_the_layers_below_it() -> None:
    wrong = [
        str(arrow) for arrow in arrows() if arrow.target_layer not in ALLOWED[arrow.source_layer]
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_nothing_imports_the_cli_but_the_command_itself() -> None:
    into_cli = [
        str(arrow)
        for arrow in arrows()
        if arrow.target_layer == "cli" and arrow.source != "orchestrator/__main__.py"
    ]
    assert not into_cli, "\n".join(into_cli)


def test_the_layers_form_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for arrow in arrows():
        if arrow.source_layer != "facade" and arrow.target_layer != "facade":
            graph.setdefault(arrow.source_layer, set()).add(arrow.target_layer)
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"the layers import each other in a circle: {' -> '.join(error.args[1])}")
    assert order.index("core") < order.index("authoring") < order.index("scheduling")


def test_every_layer_is_known_and_every_subpackage_says_what_it_may_import() -> None:
    for path in source_files():
        assert layer_of(module_name(path)) in ALLOWED, f"{path}: add its layer to ALLOWED"
    for init in (ROOT / "orchestrator").glob("*/__init__.py"):
        if init.parent.name == "templates":
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Imports:" in doc or init.parent.name in ("api", "cli", "store"), init


def test_no_module_of_the_orchestrator_package_is_much_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "orchestrator").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 410
    }
    assert not long, f"split these by responsibility: {long}"


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    """The rules above can fail: an authoring module importing the engine is caught."""
    bad = Arrow("x.py", 1, "orchestrator.scheduling.engine", "authoring", "scheduling")
    assert bad.target_layer not in ALLOWED[bad.source_layer]
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from orchestrator.scheduling import engine\n")
    assert list(imports_of(source)) == [(2, "orchestrator.scheduling.engine")]


def test_the_web_ui_is_a_layer_of_its_own_above_the_api() -> None:
    assert layer_of("orchestrator.ui.graph_layout") == "ui"
    assert "api" in ALLOWED["ui"] and "ui" not in ALLOWED["api"]
