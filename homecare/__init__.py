"""The ``homecare`` command and its tools, apart from the runtime they drive.

:mod:`~homecare.cli` (one sub-command per job; ``python -m homecare``), :mod:`~homecare.demo`
(the zero-setup demo with an :mod:`~homecare.embedded_broker`), :mod:`~homecare.replay`
(recorded traffic through the real pipeline on a simulated clock),
:mod:`~homecare.evaluate` (alerts scored against ground-truth labels),
:mod:`~homecare.configcheck` (every problem of a configuration at once) and
:mod:`~homecare.progress` (how far a long offline job is). They use the gateway and
the simulators; nothing but the benchmarks imports them. Each tool is its own entry point, so
the package exports nothing and importing it loads nothing.
"""

__all__: list[str] = []
