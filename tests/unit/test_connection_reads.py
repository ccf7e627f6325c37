"""An MQTT connection hands the parser at most ``READ_BYTES`` at a time (issue #17).

Each read is parsed on the event loop in one go. With asyncio's default (256 KiB, ~2,000
messages of a flood) one read of the main session held the loop up to 49 ms while the urgent
session's press waited in its socket (flood benchmark, 2026-12-02)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from devices import mqttwire as wire
from gateway.ingest import connection
from gateway.ingest.connection import READ_BYTES


async def _until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``condition`` on the event loop until it holds; TimeoutError after ``within``."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {within} s")
        await asyncio.sleep(0.01)


class _Counting(connection._Connection):
    """Records the size of each read instead of parsing it."""

    def __init__(self) -> None:
        super().__init__(None, wire.V5)  # type: ignore[arg-type]
        self.reads: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # let the socket fill first

    def data_received(self, data: bytes) -> None:
        self.reads.append(len(data))


def test_a_full_socket_is_read_in_slices() -> None:
    sent = 1024 * 1024

    async def scenario() -> list[int]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"\x00" * sent)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_Counting, "127.0.0.1", port)
        await asyncio.sleep(0.2)  # the peer's bytes wait in the socket
        transport.resume_reading()
        await _until(lambda: sum(protocol.reads) >= sent or protocol.closed.done())
        transport.close()
        server.close()
        await server.wait_closed()
        return protocol.reads

    reads = asyncio.run(scenario())
    assert sum(reads) > 2 * READ_BYTES, reads  # more was waiting than one slice
    assert max(reads) <= READ_BYTES, reads


def test_a_held_socket_is_not_read_and_a_full_inbox_keeps_it_unread_after_the_hold() -> None:
    """While an emergency call is written to the streams the main session is held (not
    read); the hold and a full inbox's pause are separate: ending one does not read a socket
    the other still holds."""

    async def scenario() -> list[tuple[str, bool]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_Counting, "127.0.0.1", port)
        transport.resume_reading()
        steps: list[tuple[str, bool]] = []
        protocol.hold(True)
        steps.append(("held", transport.is_reading()))
        protocol.hold(False)
        steps.append(("released", transport.is_reading()))
        protocol.paused = True  # the inbox filled (data_received pauses the transport so)
        transport.pause_reading()
        protocol.hold(True)
        protocol.hold(False)
        steps.append(("released, inbox full", transport.is_reading()))
        protocol.hold(True)
        protocol.resume()  # the inbox has room again
        steps.append(("inbox room, still held", transport.is_reading()))
        protocol.hold(False)
        steps.append(("both over", transport.is_reading()))
        transport.close()
        server.close()
        await server.wait_closed()
        return steps

    assert asyncio.run(scenario()) == [
        ("held", False), ("released", True), ("released, inbox full", False),
        ("inbox room, still held", False), ("both over", True)]
