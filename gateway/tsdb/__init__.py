"""The time-series database: the schema, writing, draining the spool, and reading history.

:mod:`~gateway.tsdb.lineprotocol` (how messages become points), :mod:`~gateway.tsdb.writers`
(InfluxDB v1/v2 behind ``write``/``ping``/``close``, errors classified at the boundary),
:mod:`~gateway.tsdb.drainer` (the spool into the database, in order, through outages) and
:mod:`~gateway.tsdb.history` (bed charts for the API, bounded).
"""

from gateway.tsdb.drainer import SinkWriter
from gateway.tsdb.history import InfluxV1History, InfluxV2History, reader_from_settings
from gateway.tsdb.lineprotocol import LineEncoder
from gateway.tsdb.writers import (
    InfluxV1Writer,
    InfluxV2Writer,
    TimeSeriesWriter,
    writer_from_settings,
)

__all__ = [
    "InfluxV1History",
    "InfluxV1Writer",
    "InfluxV2History",
    "InfluxV2Writer",
    "LineEncoder",
    "SinkWriter",
    "TimeSeriesWriter",
    "reader_from_settings",
    "writer_from_settings",
]
