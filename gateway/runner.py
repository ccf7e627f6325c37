"""Run a :class:`~gateway.service.Gateway` as a process: signals, logging, exit codes."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from gateway import logs
from gateway.config import Settings, load
from gateway.service import Gateway

log = logging.getLogger("homecare.gateway")


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGTERM or SIGINT, then shut down cleanly."""
    gateway = Gateway(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.stop)
    log.info("gateway.starting mqtt=%s:%s tsdb=%s data_dir=%s", settings.mqtt.host,
             settings.mqtt.port, settings.influx_url or "none (spool only)", settings.data_dir)
    await gateway.run()


def main(config: Path | None) -> None:
    settings = load(config)
    logs.setup(settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
