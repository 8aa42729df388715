"""# queue/qmqp-forward

Forwards each accepted message to a QMQP server (qmail's `qmqpd`, Postfix's
`qmqpd`, ...), the way `qmail-qmqpc` does, without holding the message in
memory.

## Arguments

    queue/qmqp-forward [server [port]]

`server` is a host name or IP address, `port` defaults to 628.  Without
arguments the servers listed in the config file `qmqpservers` are tried
(one per line, as qmail-qmqpc reads `control/qmqpservers`; a line may also
say `host:port` or `[ipv6]:port`).

## Config files

* `qmqpservers` — the servers tried in order when no argument names one.
* `qmqp_connect_timeout` — seconds to wait for a connection (default 10, as
  qmail-qmqpc).
* `qmqp_timeout` — seconds any read or write may take (default 60, as
  qmail-qmqpc).

## What it sends

One netstring holding the message netstring (header and body with LF line
ends), the sender netstring and one netstring per recipient.  The length of
the outer netstring is computed up front from the message size, so the
message is streamed from the spool in 64 KiB blocks.

## Replies

| server answer | reply |
| --- | --- |
| `K...` | `250 Queued! <server text>` |
| `Z...` | `451 Deferred: <server text>` |
| `D...` | `554 Denied: <server text>` |
| no connection (refused, timeout) | the next server; after the last one `451 QMQP server unavailable` |
| the connection fails before the whole message was sent | the next server (it cannot have queued an incomplete message) |
| no valid answer after the whole message was sent (closed, timeout, garbage) | `451` at once: the server may have queued it, so it is not sent elsewhere |

The 451 and 554 replies are sent by the plugin itself (it returns `DONE`).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PORT = 628
BLOCK_SIZE = 65536
MAX_ANSWER = 65536
_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


class QmqpError(Exception):
    """The exchange with one server failed; `retry` says whether another server may be tried."""

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def parse_server(line: str, default_port: int = DEFAULT_PORT) -> tuple[str, int] | None:
    """`host`, `host:port` or `[ipv6]:port` -> (host, port); None when malformed."""
    line = line.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?", line) or re.fullmatch(r"([^:\s]+)(?::(\d+))?", line)
    if match:
        return match.group(1), int(match.group(2) or default_port)
    if _HOST.match(line):
        return line, default_port
    return None


def clean_text(data: bytes) -> str:
    return _UNPRINTABLE.sub(" ", data.decode("utf-8", "replace")).strip()[:300]


class QmqpForward(Plugin):
    """Queues by QMQP."""

    def register(self, qp: Any, *args: str) -> None:
        if len(args) > 2:
            self.log(LOGWARN, "WARNING: Ignoring additional arguments.")
        self.servers: list[tuple[str, int]] = []
        if args:
            if not _HOST.match(args[0]) or (len(args) > 1 and not args[1].isdigit()):
                raise ValueError(f"Bad data in qmqp server: {args[0]} {' '.join(args[1:2])}")
            self.servers.append((args[0].strip("[]"), int(args[1]) if len(args) > 1 else DEFAULT_PORT))
        else:
            for line in qp.config("qmqpservers"):
                server = parse_server(line)
                if server is None:
                    self.log(LOGERROR, f"qmqpservers: ignoring bad line {line!r}")
                else:
                    self.servers.append(server)
        if not self.servers:
            raise ValueError("No QMQP server specified in qmqp-forward config")

    def timeouts(self) -> tuple[float, float]:
        return (float(self.qp.config_int("qmqp_connect_timeout", 10) or 10),
                float(self.qp.config_int("qmqp_timeout", 60) or 60))

    def fail(self, code: int, text: str) -> int:
        self.log(LOGERROR, f"{code} {text}")
        self.qp.respond(code, text)
        return DONE

    def hook_queue(self, transaction: Any) -> Any:
        sender = (transaction.sender.address if transaction.sender else "").encode("utf-8", "surrogateescape")
        addresses = netstring(sender) + b"".join(
            netstring(rcpt.address.encode("utf-8", "surrogateescape")) for rcpt in transaction.recipients)
        last_error = "no server"
        for host, port in self.servers:
            self.log(LOGINFO, f"forwarding to {host}:{port}")
            try:
                answer = self.send(host, port, transaction, addresses)
            except QmqpError as error:
                last_error = f"{host}:{port}: {error}"
                self.log(LOGWARN, f"QMQP to {last_error}")
                if error.retry:
                    continue
                return self.fail(451, "QMQP server did not confirm the message; try again later")
            return self.verdict(answer)
        self.log(LOGERROR, f"no QMQP server took the message (last: {last_error})")
        return self.fail(451, "QMQP server unavailable; try again later")

    def verdict(self, answer: bytes) -> Any:
        kind, text = answer[:1], clean_text(answer[1:])
        if kind == b"K":
            return OK, f"Queued! {text}".rstrip()
        if kind == b"D":
            return self.fail(554, f"Denied: {text}".rstrip())
        if kind == b"Z":
            return self.fail(451, f"Deferred: {text}".rstrip())
        self.log(LOGERROR, f"QMQP answer of unknown kind: {clean_text(answer)!r}")
        return self.fail(451, "QMQP protocol error; try again later")

    def send(self, host: str, port: int, transaction: Any, addresses: bytes) -> bytes:
        """Send the whole package to one server and return its decoded answer."""
        import socket

        connect_timeout, timeout = self.timeouts()
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as error:
            raise QmqpError(f"connect failed: {error}", retry=True) from error
        with sock:
            sock.settimeout(timeout)
            try:
                self.stream(sock, transaction, addresses)
            except (BrokenPipeError, ConnectionResetError) as error:
                answer = self._early_answer(sock)
                if answer is not None:
                    return answer
                raise QmqpError(f"connection lost while sending: {error}", retry=True) from error
            except OSError as error:  # a timeout or another write error: the package is incomplete
                raise QmqpError(f"sending failed: {error}", retry=True) from error
            try:
                return read_netstring(sock)
            except (OSError, ValueError) as error:
                raise QmqpError(f"no valid answer: {error}", retry=False) from error

    @staticmethod
    def _early_answer(sock: Any) -> bytes | None:
        """qmqpd may answer (D, too big) and close before reading the whole package."""
        try:
            return read_netstring(sock)
        except (OSError, ValueError):
            return None

    @staticmethod
    def stream(sock: Any, transaction: Any, addresses: bytes) -> None:
        size = transaction.message_size()
        message_head = b"%d:" % size
        total = len(message_head) + size + 1 + len(addresses)
        sock.sendall(b"%d:%s" % (total, message_head))
        sent = 0
        for block in transaction.iter_message(BLOCK_SIZE):
            sent += len(block)
            if sent > size:
                break
            sock.sendall(block)
        if sent != size:  # never finish a package whose length would lie
            raise OSError(f"message is {sent} bytes, expected {size}")
        sock.sendall(b"," + addresses + b",")
        try:
            sock.shutdown(1)  # SHUT_WR: the package is complete
        except OSError:
            pass  # the answer (or its absence) decides


def read_netstring(sock: Any) -> bytes:
    """Read one netstring answer (at most MAX_ANSWER bytes)."""
    data = b""
    while b":" not in data:
        chunk = sock.recv(32)
        if not chunk:
            raise ValueError("connection closed before the answer")
        data += chunk
        if len(data) > 12 and b":" not in data:
            raise ValueError("answer is not a netstring")
    length_text, _, rest = data.partition(b":")
    if not length_text.isdigit() or int(length_text) > MAX_ANSWER:
        raise ValueError("answer is not a netstring")
    length = int(length_text)
    while len(rest) < length + 1:
        chunk = sock.recv(length + 1 - len(rest))
        if not chunk:
            raise ValueError("connection closed in the middle of the answer")
        rest += chunk
    if rest[length:length + 1] != b"," or not length:
        raise ValueError("answer is not a netstring")
    return rest[:length]
