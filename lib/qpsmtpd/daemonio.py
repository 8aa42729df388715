"""Talking to a local scanning daemon (spamd, clamd) under a deadline.

Every exchange gets one `Deadline`: connecting has its own, shorter limit,
and every send and receive after that waits at most for what is left of
the whole exchange, so a daemon that trickles one byte a second cannot
stretch it.  Whatever goes wrong -- refused, unreachable, timed out, closed
mid-answer -- comes out as `DaemonError` with a short reason fit for one
log line; no other exception escapes.

    endpoint = parse_endpoint("/run/clamd.ctl")          # or "127.0.0.1:3310", ("host", 783)
    deadline = Deadline(20)
    sock = connect(endpoint, deadline, connect_timeout=5)
    try:
        send(sock, b"zPING\\0", deadline)
        answer = receive_until(sock, b"\\0", deadline, limit=4096)
    finally:
        sock.close()

The C module `_socket` is used directly: `socket` would import enum and
selectors, 6 ms on every message scanned.
"""

from __future__ import annotations

import _socket
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Iterable

class DaemonError(Exception):
    """The daemon could not be reached or did not answer properly (a one-line reason)."""


class Deadline:
    """The moment an exchange must be over."""

    __slots__ = ("seconds", "ends")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        """Seconds left (at most `cap`); DaemonError when none are."""
        remaining = self.ends - time.monotonic()
        if remaining <= 0:
            raise DaemonError(f"no answer within {self.seconds:g}s")
        return remaining if cap is None else min(remaining, cap)


def parse_endpoint(text: str | None, default_host: str = "localhost", default_port: int = 0) -> str | tuple[str, int]:
    """`/path/to/socket` (anything with a slash), `host:port`, `port`, or the default host and port."""
    if text and "/" in text:
        return text
    host, port = default_host, default_port
    if text:
        name, colon, number = text.rpartition(":")
        if not colon:
            name, number = "", text
        if name:
            host = name.strip("[]")
        if not (number.isascii() and number.isdigit() and 0 < int(number) < 65536):
            raise ValueError(f"{text!r} is neither a socket path nor host:port")
        port = int(number)
    return host, port


def describe(endpoint: str | tuple[str, int]) -> str:
    return endpoint if isinstance(endpoint, str) else f"{endpoint[0]}:{endpoint[1]}"


def connect(endpoint: str | tuple[str, int], deadline: Deadline, connect_timeout: float) -> _socket.socket:
    """A connected stream socket; DaemonError naming the endpoint when that fails."""
    where = describe(endpoint)
    try:
        if isinstance(endpoint, str):
            return _connected(_socket.AF_UNIX, endpoint, deadline.left(connect_timeout))
        failure: OSError | None = None
        host = endpoint[0]
        if host.isascii():
            host = host.encode()  # a str would be IDNA-encoded: `encodings.idna` and `re`, 4.5 ms
        for family, _type, _proto, _name, address in _socket.getaddrinfo(host, endpoint[1], 0, _socket.SOCK_STREAM):
            try:
                return _connected(family, address, deadline.left(connect_timeout))
            except OSError as error:
                failure = error
        raise failure or OSError("no address")
    except TimeoutError:
        raise DaemonError(f"cannot connect to {where}: timed out") from None
    except OSError as error:
        raise DaemonError(f"cannot connect to {where}: {error.strerror or error}") from None


def _connected(family: int, address: str | tuple[str, int], timeout: float) -> _socket.socket:
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        if family != _socket.AF_UNIX:
            # requests go out in several writes (protocol head, length prefixes, blocks):
            # without this, Nagle could hold a small one back until the daemon's delayed ACK
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def shutdown_write(sock: _socket.socket) -> None:
    """Tell the daemon the request is complete (it may already have closed)."""
    try:
        sock.shutdown(_socket.SHUT_WR)
    except OSError:
        pass


def send(sock: _socket.socket, data: bytes | memoryview, deadline: Deadline) -> None:
    """Send all of `data` before the deadline."""
    view = memoryview(data)
    try:
        while view:
            sock.settimeout(deadline.left())
            sent = sock.send(view)
            view = view[sent:]
    except TimeoutError:
        raise DaemonError(f"sending timed out after {deadline.seconds:g}s (the daemon stopped reading)") from None
    except OSError as error:
        raise DaemonError(f"sending failed: {error.strerror or error}") from None


def send_blocks(sock: _socket.socket, blocks: Iterable[bytes], deadline: Deadline) -> None:
    for block in blocks:
        send(sock, block, deadline)


def receive(sock: _socket.socket, deadline: Deadline, size: int = 65536) -> bytes:
    """What the daemon sends next (b'' when it closed the connection)."""
    try:
        sock.settimeout(deadline.left())
        return sock.recv(size)
    except TimeoutError:
        raise DaemonError(f"no answer within {deadline.seconds:g}s") from None
    except OSError as error:
        raise DaemonError(f"reading the answer failed: {error.strerror or error}") from None


def receive_until(sock: _socket.socket, end: bytes, deadline: Deadline, limit: int) -> bytes:
    """Bytes up to and including `end`, or up to the close; DaemonError past `limit` bytes."""
    data = bytearray()
    while end not in data:
        chunk = receive(sock, deadline)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise DaemonError(f"answer longer than {limit} bytes")
    return bytes(data)


def preview(data: bytes, length: int = 60) -> str:
    """A short, printable, single-line rendering of what a daemon said (for logs)."""
    text = data[:length].decode("ascii", "backslashreplace")
    text = "".join(char if char.isprintable() else "\\x%02x" % ord(char) for char in text)
    return repr(text + ("..." if len(data) > length else ""))


def time_budget(plugin, seconds: float, margin: float = 1.0) -> float:
    """`seconds`, cut so the exchange ends `margin` before the hook's own time limit (config/plugin_timeout).

    The plugin's documented outcome for a slow daemon (accept or 451) then
    happens instead of the engine's generic one.
    """
    limit = plugin.qp.time_limit(plugin.hook_name or "data_post", plugin)
    if limit and limit - margin < seconds:
        return max(limit - margin, limit / 2)
    return seconds
