"""``homecare gateway`` started without the command-line library: the fast way back after a
crash.

A restart is the time the broker holds a station's messages and a dispatcher waits (chaos:
ingest resumed < 2 s after each SIGKILL). The usual invocations (no option, or ``--config
FILE`` / ``-c FILE`` / ``--config=FILE`` naming an existing file, each with or without
``--standby``) are read here by
:func:`plain_arguments` and run by :func:`serve` without importing the command-line library
or building the command (about 0.3 s of a start at a load of 2-3); anything else (``--help``,
a missing file, a typo) goes to the full command (:mod:`homecare.gateway_cli`), which reads,
checks and explains it. Both run :func:`serve`.

:func:`collector_off_for_start` keeps Python's cyclic garbage collector off while the modules
are imported and the gateway is built (a fifth of the import time, measured: 1.09 -> 0.86 s);
:meth:`gateway.runtime.Gateway.run` freezes what was built and turns it back on.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["collector_off_for_start", "plain_arguments", "refuse_unknown_variables", "serve"]


def collector_off_for_start() -> None:
    """Turn the cyclic collector off until the gateway runs (it turns it on, frozen state
    kept out of its passes). Import and build make hundreds of thousands of objects and next
    to no cyclic garbage (about 1,400 objects at the end of the imports)."""
    gc.disable()


def plain_arguments(args: Sequence[str]) -> tuple[Path | None, bool] | None:
    """``(config, standby)`` for the arguments this module runs itself; ``None`` for anything
    the full command must read (help, unknown options, a path that is not an existing file).

    >>> plain_arguments([])
    (None, False)
    >>> plain_arguments(["--standby"])
    (None, True)
    >>> plain_arguments(["--help"]) is None
    True
    >>> plain_arguments(["--config", "/nonexistent.toml"]) is None
    True
    """
    rest = list(args)
    standby = "--standby" in rest
    if standby:
        rest.remove("--standby")
    if not rest:
        return (None, standby)
    if len(rest) == 2 and rest[0] in ("--config", "-c"):
        value = rest[1]
    elif len(rest) == 1 and rest[0].startswith("--config="):
        value = rest[0].partition("=")[2]
    else:
        return None
    path = Path(value)
    if not value or value.startswith("-") or not path.is_file():
        return None  # the full command says what is wrong with it
    return (path, standby)


def refuse_unknown_variables(command: str, outcome: str) -> bool:
    """Say on stderr which ``HOMECARE_*`` variables name no setting (with the closest one) and
    that ``homecare <command>`` did not run (``outcome``); True when there is any: a misspelt
    variable is an error, never silently ignored."""
    from gateway.config import unknown_variables

    unknown = unknown_variables(os.environ)
    for key, close in unknown:
        hint = f" (did you mean {close}?)" if close else ""
        print(f"homecare {command}: unknown environment variable {key}{hint}", file=sys.stderr)
    if unknown:
        print(f"homecare {command}: every HOMECARE_* variable must name a setting (see "
              f"`homecare config check`); {outcome}", file=sys.stderr)
    return bool(unknown)


def serve(config: Path | None, standby: bool = False) -> int:
    """Run the gateway until SIGTERM; the exit status (2: bad settings or unknown
    ``HOMECARE_*`` variables, the service not started). With ``standby``, wait for a gateway
    already running on the data directory to end, then take over (``--standby``)."""
    from gateway import run_gateway
    from gateway.errors import ConfigError

    if refuse_unknown_variables("gateway", "not started"):
        return 2
    try:
        run_gateway(config, standby=standby)
    except ConfigError as exc:
        print(f"homecare gateway: {exc}", file=sys.stderr)
        return 2
    return 0
