"""The ``homecare`` command's entry point: ``homecare gateway`` goes straight to the service
(:mod:`homecare.service` for the usual arguments, else :mod:`homecare.gateway_cli`), everything
else to the whole command (:mod:`homecare.cli`)."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    if sys.argv[1:2] == ["gateway"]:
        from homecare.service import collector_off_for_start, plain_arguments, serve

        collector_off_for_start()
        plain = plain_arguments(sys.argv[2:])
        if plain is not None:
            raise SystemExit(serve(*plain))
        from homecare.gateway_cli import run

        run(sys.argv[2:])
        return
    from homecare.cli import main as whole

    whole()
