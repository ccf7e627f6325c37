"""The ``homecare`` command's entry point: ``homecare gateway`` goes straight to the service
(:mod:`homecare.gateway_cli`), everything else to the whole command (:mod:`homecare.cli`)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    if sys.argv[1:2] == ["gateway"]:
        from homecare.gateway_cli import run

        run(sys.argv[2:])
        return
    from homecare.cli import main as whole

    whole()
