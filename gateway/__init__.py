"""The gateway runtime: one process that takes in every device message and never loses one.

Rooms (each a package with its own public surface, used only from the rooms above it; the
layers are checked by ``lint-imports``, see docs/ARCHITECTURE.md):

* :mod:`gateway.runner`, :mod:`gateway.runtime`: the process (signals, logging, exit codes)
  and the :class:`Gateway` that owns and wires every part;
* :mod:`gateway.ingest`: socket, inbox and urgent lane, pipeline, and the checkpoint that
  commits before it acknowledges;
* :mod:`gateway.detect`: the detectors and the alerting stage feeding :mod:`alerts`;
* :mod:`gateway.upstream`: the outbox and signed delivery to the platform and families;
* :mod:`gateway.http`: health, readiness, metrics, and the alert API and console mounted;
* :mod:`gateway.tsdb`: line protocol, database writers, the spool drainer, history readers;
* :mod:`gateway.storage`: spool, dead letters, storage health;
* :mod:`gateway.config`, :mod:`gateway.monitoring`, :mod:`gateway.logs`,
  :mod:`gateway.errors`: settings, Prometheus metrics, logging, exceptions.
"""

from typing import TYPE_CHECKING

from gateway.config import ENV_PREFIX, OTHER_VARIABLES, Settings, load, unknown_variables
from gateway.errors import ConfigError
from gateway.monitoring import Metrics
from gateway.runner import run_gateway
from gateway.runtime import Gateway

if TYPE_CHECKING:
    from gateway.settings_reference import render_example_toml
else:
    def __getattr__(name: str) -> object:
        # The settings reference is also a program (python -m gateway.settings_reference):
        # imported only when asked for, or running it would find it imported already.
        if name == "render_example_toml":
            from gateway.settings_reference import render_example_toml
            return render_example_toml
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")

__all__ = ["ENV_PREFIX", "OTHER_VARIABLES", "ConfigError", "Gateway", "Metrics", "Settings", "load",
           "render_example_toml", "run_gateway", "unknown_variables"]
