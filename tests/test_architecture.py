"""The layers of DESIGN.md: a module may import only from its own layer or layers below it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "braggsieve"
# Top to bottom.  Base modules (errors, params, the package itself) sit below every layer.
LAYERS = ["cli", "pipeline", "simulate", "io", "engine", "mask", "geometry"]
BASE = {"errors", "params", ""}


def _layer_of(module_path: Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = list(package_parts[: len(package_parts) - (node.level - 1)])
                if node.module:
                    target = base + node.module.split(".")
                    found.add(target[0])
                else:  # "from .. import x": x is a module of ``base`` or a name defined there
                    for alias in node.names:
                        found.add(base[0] if base else (alias.name if alias.name in LAYERS else ""))
            elif node.module and node.module.startswith("braggsieve"):
                parts = node.module.split(".")
                found.add(parts[1] if len(parts) > 1 else "")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "braggsieve":
                    found.add(parts[1] if len(parts) > 1 else "")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_lower_layers(path):
    layer = _layer_of(path)
    if layer not in LAYERS:
        return  # a base module: checked by test_base_modules_import_no_layer
    allowed = set(LAYERS[LAYERS.index(layer):]) | BASE
    bad = _imported_layers(path) - allowed
    assert not bad, f"{path.relative_to(PACKAGE)} (layer {layer}) imports from higher layer(s) {sorted(bad)}"


def test_base_modules_import_no_layer():
    for name in ("errors", "params"):
        assert not (_imported_layers(PACKAGE / f"{name}.py") & set(LAYERS))
