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
| `K` before the whole package was sent, or a `K` followed by a reset (the server closed with our bytes unread) | the next server: a yes for a message the server has not seen is no yes |
| `D`/`Z` before the whole package was sent (e.g. too big) | `554`/`451` as above |
| a connection reset instead of an answer (the server closed with our bytes unread) | the next server |
| no valid answer after the whole message was sent (closed, timeout, garbage) | `451` at once: the server may have queued it, so it is not sent elsewhere |

The 451 and 554 replies are sent by the plugin itself (it returns `DONE`).
"""

from __future__ import annotations

import re

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DONE, LOGERROR, LOGINFO, LOGWARN, OK
from qpsmtpd.plugin import Plugin

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

    arguments = Arguments(positional=(Option("server", help="host name or IP address"),
                                      Option("port", help="default 628")), free=True)

    def register(self, qp: Any, *args: str) -> None:
        if len(args) > 2:
            self.log(LOGWARN, "WARNING: Ignoring additional arguments.")
        self.servers: list[tuple[str, int]] = []
        server, port = self.opts["server"], self.opts["port"]
        if server:
            if not _HOST.match(server) or (port is not None and not (port.isascii() and port.isdigit())):
                raise ValueError(f"Bad data in qmqp server: {server} {port or ''}")
            self.servers.append((server.strip("[]"), int(port) if port else DEFAULT_PORT))
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
                early = self.stream(sock, transaction, addresses)
            except (BrokenPipeError, ConnectionResetError) as error:
                early = self._early_answer(sock)
                if early is None:
                    raise QmqpError(f"connection lost while sending: {error}", retry=True) from error
            except OSError as error:  # a timeout or another write error: the package is incomplete
                raise QmqpError(f"sending failed: {error}", retry=True) from error
            if early is not None:
                return self.early(early)
            try:
                answer = read_netstring(sock)
            except ConnectionResetError as error:  # closed with our bytes unread: it cannot have queued
                raise QmqpError(f"connection reset before an answer: {error}", retry=True) from error
            except (OSError, ValueError) as error:
                raise QmqpError(f"no valid answer: {error}", retry=False) from error
            if answer[:1] == b"K" and not self.closed_cleanly(sock, timeout):
                raise QmqpError("server said K but had not read the whole package (connection reset)",
                                retry=True)
            return answer

    @staticmethod
    def closed_cleanly(sock: Any, timeout: float) -> bool:
        """After its answer a QMQP server closes.  A reset instead of an orderly close means
        it closed with our bytes unread: its K was not for the whole package."""
        sock.settimeout(min(timeout, 2.0))
        try:
            sock.recv(1)
        except ConnectionResetError:
            return False
        except OSError:  # still open after the answer, or another error: its answer stands
            pass
        return True

    @staticmethod
    def early(answer: bytes) -> bytes:
        """An answer before the whole package was sent: a refusal counts, a `K` cannot
        (the server has not seen the whole message), so the next server is tried."""
        if answer[:1] == b"K":
            raise QmqpError(f"server said K before the whole message was sent: {clean_text(answer)!r}",
                            retry=True)
        return answer

    @classmethod
    def _answer_before_end(cls, sock: Any) -> bytes:
        answer = cls._early_answer(sock)
        if answer is None:
            raise QmqpError("the server closed before the whole message was sent", retry=True)
        return answer

    @staticmethod
    def _early_answer(sock: Any) -> bytes | None:
        """qmqpd may answer (D, too big) and close before reading the whole package."""
        try:
            return read_netstring(sock)
        except (OSError, ValueError):
            return None

    @classmethod
    def stream(cls, sock: Any, transaction: Any, addresses: bytes) -> bytes | None:
        """Send the package; an answer that arrives before it is complete is returned at once."""
        import select

        poller = select.poll()
        poller.register(sock, select.POLLIN)
        size = transaction.message_size()
        message_head = b"%d:" % size
        total = len(message_head) + size + 1 + len(addresses)
        sock.sendall(b"%d:%s" % (total, message_head))
        sent = 0
        for block in transaction.iter_message(BLOCK_SIZE):
            if poller.poll(0):  # the server spoke (or closed) before it had everything
                return cls._answer_before_end(sock)
            sent += len(block)
            if sent > size:
                break
            sock.sendall(block)
        if sent != size:  # never finish a package whose length would lie
            raise OSError(f"message is {sent} bytes, expected {size}")
        if poller.poll(0):
            return cls._answer_before_end(sock)
        sock.sendall(b"," + addresses + b",")
        try:
            sock.shutdown(1)  # SHUT_WR: the package is complete
        except OSError:
            pass  # the answer (or its absence) decides
        return None


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
