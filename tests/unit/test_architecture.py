"""The shape of the code (docs/ARCHITECTURE.md): public surfaces, module sizes, import layers.

* Every package says what it offers in its ``__init__`` (``__all__``), and every name listed
  there exists.
* Code of one top-level package uses another only through that surface: ``from alerts.store
  import AlertStore`` is fine because ``AlertStore`` is in ``alerts.__all__``; a name that is
  not exported there is an internal detail and may change without notice. (Tests may look
  inside; the benchmarks keep to the surfaces too, but may drive the tools' modules.)
* No module is over :data:`MAX_LINES` lines unless its docstring says why.
* The examples in every module's docstrings run and show what they say.
* The import layers of pyproject.toml's ``[tool.importlinter]`` hold, and the check fails on a
  back edge (proved on a copy of the tree with one added).
"""

from __future__ import annotations

import ast
import doctest
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("devices", "alerts", "gateway", "homecare", "simulators")
CONSUMERS = (*PACKAGES, "bench")
MAX_LINES = 400
SIZE_REASON = "over 400 lines"
"""Words a longer module's docstring must contain, with the reason after them."""


def _packages() -> list[str]:
    names = []
    for top in PACKAGES:
        for init in sorted((ROOT / top).rglob("__init__.py")):
            names.append(".".join(init.parent.relative_to(ROOT).parts))
    return names


def _modules(tops: tuple[str, ...]) -> list[Path]:
    return [path for top in tops for path in sorted((ROOT / top).rglob("*.py"))]


def _nearest_package(module: str) -> str:
    """``module`` itself when it is a package, else the package it is in."""
    path = ROOT.joinpath(*module.split("."))
    return module if (path / "__init__.py").exists() else module.rsplit(".", 1)[0]


@pytest.mark.parametrize("package", _packages())
def test_every_package_declares_its_public_surface(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__, f"{package}/__init__.py: say what the package is for"
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{package}/__init__.py: declare __all__"
    assert len(set(exported)) == len(exported), f"{package}.__all__ lists a name twice"
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names {name!r}, which it lacks"


def _module_names() -> list[str]:
    names = []
    for path in _modules(PACKAGES):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module", _module_names())
def test_the_examples_in_docstrings_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def _cross_package_imports() -> list[tuple[str, int, str, str]]:
    """``(file, line, module, name)`` of every ``from X import name`` across top packages."""
    found = []
    for path in _modules(CONSUMERS):
        own = path.relative_to(ROOT).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
                continue
            top = node.module.split(".")[0]
            if top in PACKAGES and top != own:
                for alias in node.names:
                    found.append((str(path.relative_to(ROOT)), node.lineno, node.module,
                                  alias.name))
    return found


def test_packages_use_each_other_only_through_their_public_surface() -> None:
    offenders = []
    for file, line, module, name in _cross_package_imports():
        if file.startswith("bench/") and module.startswith("homecare."):
            continue  # the benchmarks drive the tools' entry points
        package = _nearest_package(module)
        exported = importlib.import_module(package).__dict__.get("__all__", [])
        submodule = ROOT.joinpath(*module.split("."), f"{name}.py").exists()
        if name not in exported and not submodule:
            offenders.append(f"{file}:{line}: {name} from {module} "
                             f"(not in {package}.__all__)")
    assert not offenders, "imports past a public surface:\n" + "\n".join(offenders)


def test_no_module_is_long_without_saying_why() -> None:
    long = []
    for path in _modules(PACKAGES):
        lines = path.read_text().count("\n")
        if lines > MAX_LINES:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            if SIZE_REASON not in doc:
                long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long, (f"modules over {MAX_LINES} lines whose docstring does not say why "
                      f"('{SIZE_REASON}: ...'):\n" + "\n".join(long))


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--no-logo", "--no-cache"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(cwd), "PATH": ""})


def test_the_import_layers_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layer_check_fails_on_a_back_edge(tmp_path: Path) -> None:
    for top in PACKAGES:
        shutil.copytree(ROOT / top, tmp_path / top,
                        ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    model = tmp_path / "alerts" / "model.py"
    model.write_text(model.read_text() + "\nimport gateway.config  # a back edge\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "alerts.model -> gateway.config" in result.stdout


def test_the_alert_types_of_alerts_and_of_the_label_format_are_the_same() -> None:
    from alerts.model import SITE_TYPES, AlertType
    from devices.labels import ALERT_TYPES

    # Labels are about beds; the site-level types (a site gone dark, the gateway's health)
    # have no bed and no ground truth in simulated traffic.
    assert tuple(t.value for t in AlertType if t not in SITE_TYPES) == ALERT_TYPES
