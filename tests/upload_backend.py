"""A cluster ingress in its own process that reads request bodies as servers do (nginx's
`client_body_timeout`, say): it gives up on a body once the client has been silent for
`--body-timeout` seconds, then does what `--on-stall` says: `close` (FIN, no answer), `reset`
(RST) or `408` (answers 408 and closes). With `--reset-after N` it resets the connection once N
body bytes have arrived, whatever the client does (an endpoint failing mid-upload).

    python -m tests.upload_backend --fd N --name eu-west --body-timeout 0.2 --on-stall close

Every other request is answered 200 once its body is in (GET /healthz too, for the probes),
each on its own connection (`Connection: close`). It prints "ready" once it accepts
connections, then a line as each request body starts ("body") and one as it ends unanswered
("stalled", "reset", or "gone" when the client went away), for the test to wait on.
`start_upload_backends` starts one per cluster name, as `tests.clusters.start_clusters` does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from tests.clusters import ROOT, ClusterProcess, address_block, listen_on_common_port

T = TypeVar("T")


@dataclass(frozen=True)
class Behaviour:
    name: str
    body_timeout: float
    on_stall: str  # close, reset or 408
    reset_after: int | None  # body bytes after which the connection is reset


class Stalled(Exception):
    """The client was silent for the body timeout."""


class Reset(Exception):
    """`reset_after` body bytes arrived."""


async def _within(seconds: float, step: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(step, seconds)
    except TimeoutError:
        raise Stalled from None


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], how: Behaviour) -> int:
    """The body's size, read as its framing says (no trailers), each wait bounded."""
    total = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while size := int((await _within(how.body_timeout, reader.readline())).split(b";")[0], 16):
            await _within(how.body_timeout, reader.readexactly(size + 2))
            total += size
            if how.reset_after is not None and total >= how.reset_after:
                raise Reset
        await _within(how.body_timeout, reader.readline())
        return total
    left = int(headers.get("content-length", "0"))
    while left:
        piece = await _within(how.body_timeout, reader.read(min(left, 65536)))
        if not piece:
            raise asyncio.IncompleteReadError(b"", left)
        left -= len(piece)
        total += len(piece)
        if how.reset_after is not None and total >= how.reset_after:
            raise Reset
    return total


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, how: Behaviour
) -> None:
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        if "transfer-encoding" in headers or int(headers.get("content-length", "0")):
            print("body", flush=True)  # noqa: T201 (the test waits for these lines)
        size = await _read_body(reader, headers, how)
    except Stalled:
        print("stalled", flush=True)  # noqa: T201
        if how.on_stall == "reset":
            _reset(writer)
            return
        if how.on_stall == "408":
            writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n")
            writer.write(b"Connection: close\r\n\r\n")
    except Reset:
        print("reset", flush=True)  # noqa: T201
        _reset(writer)
        return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
        print("gone", flush=True)  # noqa: T201 (the client went away, or sent garbage)
    else:
        text = f"{how.name} received {size}\n".encode()
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(text), text))
    with contextlib.suppress(OSError):
        writer.close()
        await writer.wait_closed()


async def serve(fd: int, how: Behaviour) -> None:
    sock = socket.socket(fileno=fd)
    server = await asyncio.start_server(lambda r, w: _serve(r, w, how), sock=sock)
    print("ready", flush=True)  # noqa: T201 (the parent waits for this line)
    async with server:
        await server.serve_forever()


async def start_upload_backends(names: list[str], *options: str) -> list[ClusterProcess]:
    """One upload backend per name (with the command-line `options`), on fresh loopback
    addresses sharing one port; their stdout lines can be read from `.process.stdout`."""
    addresses = address_block(len(names))
    socks = listen_on_common_port(addresses)
    port = socks[0].getsockname()[1]
    started = []
    for name, address, sock in zip(names, addresses, socks, strict=True):
        fd = sock.fileno()
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.upload_backend", "--fd", str(fd), "--name", name),
            *options,
            pass_fds=(fd,),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        sock.close()  # the child holds the only copy
        started.append(ClusterProcess(name, address, port, process=process))
        assert process.stdout is not None
        async with asyncio.timeout(20):
            line = await process.stdout.readline()
        assert line.strip() == b"ready", line
    return started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--body-timeout", type=float, default=30.0)
    parser.add_argument("--on-stall", choices=("close", "reset", "408"), default="close")
    parser.add_argument("--reset-after", type=int, default=None)
    args = parser.parse_args()
    how = Behaviour(args.name, args.body_timeout, args.on_stall, args.reset_after)
    asyncio.run(serve(args.fd, how))


if __name__ == "__main__":
    main()
