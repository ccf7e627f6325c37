"""Run a :class:`~gateway.runtime.Gateway` as a process: signals, logging, exit codes, and
systemd's notifications (:mod:`gateway.sdnotify`: ready once serving, stopping, and the
watchdog fed from the event loop for the whole life of the process)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway import logs
from gateway.config import Settings, load
from gateway.errors import ConfigError
from gateway.monitoring import process_age_s
from gateway.runtime import Gateway
from gateway.sdnotify import FEEDS_PER_PERIOD, Notifier
from gateway.storage.health import is_storage_error

log = logging.getLogger("homecare.gateway")


STORES_RETRY_S = 10.0
"""How often a gateway whose stores cannot be opened at start (disk full, I/O errors) tries
again, instead of exiting and being restarted into the same failure."""


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGTERM or SIGINT, then shut down cleanly."""
    notifier = Notifier.from_environ()
    if notifier is None:
        await _serve(settings, None)
        return
    watchdog = asyncio.create_task(notifier.feed_watchdog(), name="sd-watchdog")
    try:
        await _serve(settings, notifier)
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog


async def _serve(settings: Settings, notifier: Notifier | None) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop(then: Callable[[], None]) -> Callable[[], None]:
        def handler() -> None:
            if notifier is not None:
                notifier.stopping()
            then()
        return handler

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop(stopping.set))
    gateway = await _open(settings, stopping, notifier)
    if gateway is None:
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop(gateway.stop))
    log.info("gateway.starting mqtt=%s:%s tsdb=%s data_dir=%s process_age_s=%s",
             settings.mqtt.host, settings.mqtt.port, settings.influx_url or "none (spool only)",
             settings.data_dir, process_age_s())
    run = asyncio.create_task(gateway.run(), name="gateway")
    if notifier is not None:
        started = asyncio.create_task(_started(gateway), name="sd-ready")
        await asyncio.wait((run, started), return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            notifier.ready(f"serving on {gateway.http_address or settings.api_addr}")
        else:  # the gateway ended (failed) before it served
            await _cancel(started)
    await run


async def _started(gateway: Gateway) -> None:
    await gateway.started.wait()
    await gateway.http_started.wait()


async def _open(settings: Settings, stopping: asyncio.Event,
                notifier: Notifier | None = None) -> Gateway | None:
    """The gateway with its stores open; while storage trouble keeps a store from opening,
    log it once and retry (once more on success); ``None`` when stopped meanwhile."""
    failed_since: float | None = None
    attempts = 0
    reason = {"stores_open": ""}
    placeholder: asyncio.Task[None] | None = None
    while True:
        try:
            gateway = Gateway(settings)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            attempts += 1
            reason["stores_open"] = f"{type(exc).__name__}: {exc}"[:300]
            if failed_since is None:
                failed_since = time.monotonic()
                gc.enable()  # off for the start (homecare.service); this wait may be long
                from gateway.http import HttpLimits, not_ready_app, serve

                host, port = settings.api_host_port
                placeholder = asyncio.create_task(
                    serve(not_ready_app(reason), host, port,
                          limits=HttpLimits.from_settings(settings)), name="http-not-ready")
                log.error("storage.unavailable_at_start data_dir=%s error=%s: %s; the stores "
                          "cannot be opened, retrying every %.0f s (free space or fix the "
                          "data directory)", settings.data_dir, type(exc).__name__, exc,
                          STORES_RETRY_S)
                if notifier is not None:
                    # Up and saying why it is not ready (/readyz): a start timeout would only
                    # restart it into the same failure.
                    notifier.ready(f"stores cannot be opened, retrying: {reason['stores_open']}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STORES_RETRY_S):
                    await stopping.wait()
            if stopping.is_set():
                await _cancel(placeholder)
                return None
            continue
        await _cancel(placeholder)
        if failed_since is not None:
            log.info("storage.resumed_at_start after_s=%.1f failed_attempts=%d",
                     time.monotonic() - failed_since, attempts)
        return gateway


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def run_gateway(config: Path | None, *, standby: bool = False) -> None:
    """Run the gateway until SIGTERM; with ``standby``, a gateway already holding the data
    directory is waited for (:func:`wait_for_data_dir`) instead of refused."""
    settings = load(config)
    logs.setup(settings.log_level, settings.log_format)
    if standby:
        lock = wait_for_data_dir(settings.data_dir, warm_up=Gateway.warm_up)
        # The settings as they are now, not as they were when the wait began (days ago,
        # perhaps, and edited since); the data directory is the one whose lock is held.
        waited, settings = settings, load(config)
        if settings.data_dir != waited.data_dir:
            os.close(lock)
            raise ConfigError(f"data_dir changed from {waited.data_dir} to {settings.data_dir} "
                              "while this standby waited; not started (start it again)")
        logs.setup(settings.log_level, settings.log_format)
    else:
        lock = lock_data_dir(settings.data_dir)
    try:
        asyncio.run(serve(settings))
    finally:
        if lock >= 0:
            os.close(lock)


LOCK_FILE = "gateway.lock"


def lock_data_dir(data_dir: Path) -> int:
    """Hold ``data_dir/gateway.lock`` (an exclusive ``flock``, released when the process ends,
    also by SIGKILL) for the life of the process; raises :class:`ConfigError` when another
    gateway holds it. Two gateways on one data directory would share its spool, stores and
    outboxes: a second one started by mistake got as far as restoring alerts and replaying the
    spool before its port was found taken (a verifier). Returns the lock's descriptor, or -1
    when the lock file cannot be made (a full disk: the start goes on, unguarded)."""
    path = data_dir / LOCK_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        # A full or failing disk must not stop the start: the gateway waits, not ready, for
        # its stores (STORES_RETRY_S). Only the guard against a second gateway is lost.
        log.warning("data_dir.unlocked path=%s error=%r; a second gateway on this directory "
                    "would not be stopped", path, str(exc))
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise ConfigError(f"another gateway (pid {holder}) is running on the data directory "
                          f"{data_dir} (it holds {path}); not started") from None
    _write_pid(fd)
    return fd


def wait_for_data_dir(data_dir: Path, notifier: Notifier | None = None, *,
                      warm_up: Callable[[], None] | None = None) -> int:
    """:func:`lock_data_dir` for a standby: while another gateway holds the data directory,
    wait for it, imported and configured, and take over the moment it ends (its lock is
    released by the kernel, also on SIGKILL or a watchdog's SIGABRT). A restart then costs no
    process start (imports, settings: most of a second, more on a loaded hub or a cold page
    cache; RELIABILITY.md), only the stores and the connections; ``warm_up`` (imports a start
    makes later) runs before the wait. Under systemd the standby is
    READY at once with a STATUS saying it waits, and its watchdog is fed from a thread while it
    waits (its only work is the wait: nothing else could hang); SIGTERM ends the wait and the
    process (exit status 0)."""
    path = data_dir / LOCK_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return lock_data_dir(data_dir)  # logs why the directory is unguarded
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        notifier = notifier if notifier is not None else Notifier.from_environ()
        holder = _holder(fd)
        if warm_up is not None:
            warm_up()
        log.info("gateway.standby data_dir=%s holder_pid=%s process_age_s=%s; waiting to take "
                 "over when it ends", data_dir, holder, process_age_s())
        waiting = threading.Event()
        feeder = None
        if notifier is not None:
            notifier.ready(f"standby: gateway pid {holder} serves {data_dir}")
            feeder = threading.Thread(target=_feed_while_waiting, args=(notifier, waiting),
                                      name="standby-watchdog", daemon=True)
            feeder.start()
        began = time.monotonic()
        previous = signal.signal(signal.SIGTERM, _end_standby)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            signal.signal(signal.SIGTERM, previous)
            waiting.set()
        log.info("gateway.taking_over data_dir=%s after_s=%.1f previous_pid=%s",
                 data_dir, time.monotonic() - began, holder)
        if notifier is not None:
            notifier.status(f"taking over {data_dir} from pid {holder}")
    _write_pid(fd)
    return fd


def _end_standby(signum: int, frame: object) -> None:
    log.info("gateway.standby_stopped signal=%s; it never served", signal.Signals(signum).name)
    raise SystemExit(0)


def _feed_while_waiting(notifier: Notifier, done: threading.Event) -> None:
    if notifier.watchdog_s is None:
        return
    interval = notifier.watchdog_s / FEEDS_PER_PERIOD
    while not done.is_set():
        notifier.send("WATCHDOG=1")
        done.wait(interval)


def _holder(fd: int) -> str:
    """The pid the lock's holder wrote into it (for messages only)."""
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    return "?"


def _write_pid(fd: int) -> None:
    with contextlib.suppress(OSError):  # the pid is for messages only (a full disk)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
