"""Run ``homecare`` as if only the package's runtime dependencies were installed.

The test environment holds the extras too (the demo broker, the MQTT clients of the tests, the
test tools), so an import of one of them from the gateway would go unnoticed. This computes the
distributions the package needs without extras (its requirements, recursively), and makes
every other installed module fail to import, as it would on a host where ``pip install
homecare-gateway`` installed nothing more:

    python -m tests.runtime_only gateway --config gateway.toml

Attempts to import a blocked module are appended to the file named by
``RUNTIME_ONLY_BLOCKED_LOG`` (when set), one name a line.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata as metadata
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType

from packaging.requirements import Requirement

PACKAGE = "homecare-gateway"
OURS = frozenset({"devices", "alerts", "gateway", "homecare", "simulators", "tests", "bench"})


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions(package: str = PACKAGE) -> set[str]:
    """The normalised names of ``package`` and every distribution it needs without extras
    (with the extras its own requirements ask for, such as ``pwdlib[argon2]``)."""
    seen: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(package, "")]
    while todo:
        name, extra = todo.pop()
        name = _normal(name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                todo.append((requirement.name, ""))
                todo.extend((requirement.name, wanted) for wanted in requirement.extras)
    return {name for name, _ in seen}


def blocked_modules(package: str = PACKAGE) -> set[str]:
    """Top-level modules installed here whose distributions the runtime does not need."""
    allowed = runtime_distributions(package)
    blocked = set()
    for module, dists in metadata.packages_distributions().items():
        if module in OURS or module in sys.stdlib_module_names:
            continue
        if not any(_normal(dist) in allowed for dist in dists):
            blocked.add(module)
    return blocked


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, blocked: set[str], log_path: str | None) -> None:
        self.blocked = blocked
        self.log_path = log_path

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in self.blocked:
            if self.log_path:
                with open(self.log_path, "a") as log:
                    log.write(f"{top}\n")
            raise ModuleNotFoundError(f"No module named {fullname!r} (not a runtime "
                                      f"dependency of {PACKAGE})", name=fullname)
        return None


def main() -> None:
    blocked = blocked_modules()
    for name in [name for name in sys.modules if name.partition(".")[0] in blocked]:
        del sys.modules[name]
    sys.meta_path.insert(0, _Blocker(blocked, os.environ.get("RUNTIME_ONLY_BLOCKED_LOG")))
    from homecare.cli import main as homecare

    sys.argv = ["homecare", *sys.argv[1:]]
    homecare()


if __name__ == "__main__":
    main()
