"""The package's layers point down: a module imports only from its own layer and the layers below
it, and the lower layers load none of the heavy libraries they do not need."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlb_suite"

# Lowest first. Each entry is a folder or module of nlb_suite; the package's own __init__ (the
# version) belongs to the core.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "__init__"),
    ("data",),
    ("datasets",),
    ("tensors",),
    ("models",),
    ("scoring",),
    ("outputs",),
    ("report",),
    ("tuning",),
    ("pipeline",),
    ("commands", "cli"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer_of(module: str) -> str:
    """'nlb_suite.models.lfads.train' -> 'models'; 'nlb_suite' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every nlb_suite module `path` imports (at any depth: lazy imports count), absolute."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(relative.parts[:-1]) if relative.name != "__init__" else list(relative.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "nlb_suite" or (node.level and target.count(".") == 0):
                # `from .. import x`: x may be a module of the package or a name in its __init__.
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("nlb_suite")]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    unknown = {_layer_of(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in _modules()}
    assert unknown - set(RANK) == set()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    own = _layer_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    upward = []
    for line, module in _imported_modules(path):
        layer = _layer_of(module)
        if layer in RANK and RANK[layer] > RANK[own]:
            upward.append(f"line {line}: {module} ({layer} is above {own})")
    assert not upward, "\n".join(upward)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_tensors_load_neither_torch_nor_the_nwb_writer() -> None:
    loaded = _loaded_after("import nlb_suite.tensors")
    assert not {name for name in loaded if name == "torch" or name.startswith("torch.")}
    assert "pynwb" not in loaded and "nlb_suite.data.nwb_write" not in loaded


def test_scoring_and_outputs_do_not_load_torch() -> None:
    loaded = _loaded_after("import nlb_suite.scoring, nlb_suite.outputs.submission, nlb_suite.outputs.results")
    assert "torch" not in loaded
