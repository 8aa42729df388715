"""# queue/postfix-queue

Hands each accepted message straight to Postfix's `cleanup(8)` service,
speaking the record protocol Postfix's own `smtpd` and `pickup` use, so
qpsmtpd can run in front of a Postfix host without a second SMTP hop.

## Arguments

    queue/postfix-queue [socket] [FLAG_...]...

`socket` (an argument starting with `/`) is the cleanup socket; default
`/var/spool/postfix/public/cleanup`.  Every other argument is a cleanup
flag; flags are OR-ed together, unknown ones are ignored with a warning.
No flag is set by default.

| flag | value | meaning |
| --- | --- | --- |
| `FLAG_NONE` | 0 | no special features |
| `FLAG_BOUNCE` | 1 | bounce bad messages |
| `FLAG_FILTER` | 2 | header/body checks and content_filter |
| `FLAG_HOLD` | 4 | place the message on hold |
| `FLAG_DISCARD` | 8 | discard the message silently (do not use) |
| `FLAG_BCC_OK` | 16 | automatic BCC (recipient_bcc_maps ...) |
| `FLAG_MAP_OK` | 32 | address mapping (virtual_alias_maps ...) |
| `FLAG_MILTER` | 64 | Milter applications |
| `FLAG_SMTP_REPLY` | 128 | (Postfix 2.6+) |
| `FLAG_FILTER_ALL` | 66 | FILTER and MILTER |
| `FLAG_MASK_EXTERNAL` | 114 | what Postfix uses for mail from outside: probably what you want |
| `FLAG_MASK_INTERNAL` | 32 | MAP_OK |

## Config files and environment

* `cleanup_sockets` — sockets tried in order (a path, or `host:port` for a
  cleanup service reachable over TCP); used when `POSTFIXQUEUE` is unset.
* `POSTFIXQUEUE` (environment) — one socket that overrides everything else.
* `postfix_queue_timeout` — seconds the connection and every read or write
  may take (default 60); past it the message is not queued (451).

## Protocol

cleanup announces itself and the queue id (`name\\0value\\0 ... \\0`), the
plugin answers with the `flags` attribute, then sends the time, sender and
recipient records, the message as one `N` record per line (lines longer than
1024 bytes are split with `L` records), and the end records; cleanup answers
with `status` and `reason`.

## Replies

| cleanup status | reply |
| --- | --- |
| 0 | `250 Queued! <message-id> (Queue-Id: <id>)` |
| DEFER, PROXY, BAD or WRITE bits | `451 <reason>`, e.g. `451 queue file write error (#4.3.0)` |
| SIZE, CONT, HOPS or RCPT bits | `554 <reason>`, e.g. `554 message content rejected (#5.7.1)` |
| anything else, no socket, a broken connection | `451` |

Failures are answered by the plugin itself (it returns `DONE`).
"""

from __future__ import annotations

import os
import re
import time

from qpsmtpd.args import Arguments
from qpsmtpd.constants import DONE, LOGERROR, LOGWARN, OK
from qpsmtpd.plugin import Plugin

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET = "/var/spool/postfix/public/cleanup"
LINE_LIMIT = 1024
BLOCK_SIZE = 65536
TIMEOUT = 60

FLAGS = {
    "FLAG_NONE": 0, "FLAG_BOUNCE": 1 << 0, "FLAG_FILTER": 1 << 1, "FLAG_HOLD": 1 << 2,
    "FLAG_DISCARD": 1 << 3, "FLAG_BCC_OK": 1 << 4, "FLAG_MAP_OK": 1 << 5, "FLAG_MILTER": 1 << 6,
    "FLAG_SMTP_REPLY": 1 << 7,
}
FLAGS["FLAG_FILTER_ALL"] = FLAGS["FLAG_FILTER"] | FLAGS["FLAG_MILTER"]
FLAGS["FLAG_MASK_EXTERNAL"] = FLAGS["FLAG_FILTER_ALL"] | FLAGS["FLAG_BCC_OK"] | FLAGS["FLAG_MAP_OK"]
FLAGS["FLAG_MASK_INTERNAL"] = FLAGS["FLAG_MAP_OK"]
FLAGS["FLAG_MASK_EXTRA"] = FLAGS["FLAG_HOLD"] | FLAGS["FLAG_DISCARD"]

# cleanup_user.h status bits: (bit, permanent?, default text); temporary ones are checked first
STATUS = (
    (1 << 8, False, "service unavailable (#4.7.1)"),       # DEFER
    (1 << 7, False, "queue file write error (#4.3.0)"),     # PROXY
    (1 << 0, False, "internal protocol error (#4.3.0)"),    # BAD
    (1 << 1, False, "queue file write error (#4.3.0)"),     # WRITE
    (1 << 6, True, "no recipients specified (#5.1.0)"),     # RCPT
    (1 << 4, True, "too many hops (#5.4.0)"),               # HOPS
    (1 << 2, True, "message file too big (#5.3.4)"),        # SIZE
    (1 << 3, True, "message content rejected (#5.7.1)"),    # CONT
)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


class CleanupError(Exception):
    """The conversation with cleanup failed."""


def length_prefix(size: int) -> bytes:
    """Postfix's record length: base-128, least significant first, high bit = more."""
    out = bytearray()
    while size >= 0x80:
        out.append((size & 0x7F) | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out)


_PREFIX = [length_prefix(n) for n in range(LINE_LIMIT + 1)]


def record(kind: bytes, data: bytes) -> bytes:
    return kind + length_prefix(len(data)) + data


def line_records(lines: list[bytes]) -> bytes:
    """`N` records for complete lines without their LF (long ones split with `L`)."""
    out = []
    for line in lines:
        while len(line) > LINE_LIMIT:
            out += [b"L", _PREFIX[LINE_LIMIT], line[:LINE_LIMIT]]
            line = line[LINE_LIMIT:]
        out += [b"N", _PREFIX[len(line)], line]
    return b"".join(out)


def content_records(blocks: Any) -> Any:
    """The message as records, one chunk of records per input block."""
    partial = b""
    for block in blocks:
        lines = (partial + block).split(b"\n") if partial else block.split(b"\n")
        partial = lines.pop()
        if lines:
            yield line_records(lines)
    if partial:
        yield line_records([partial])


def clean_text(text: str) -> str:
    return _UNPRINTABLE.sub(" ", text).strip()[:300]


def message_id(transaction: Any) -> str:
    value = transaction.header.get("Message-Id") if transaction.header is not None else None
    return (value or "").split("\n")[0].split("\r")[0].strip()


class CleanupStream:
    """A connection to cleanup: attribute lists (`name\\0value\\0...\\0`) and records."""

    def __init__(self, address: str, timeout: float = TIMEOUT) -> None:
        import socket

        if address.startswith("/"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(address)
            except OSError:
                self.sock.close()
                raise
        else:
            host, _, port = address.rpartition(":")
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        self.buffer = b""

    def read_attributes(self) -> dict[str, str]:
        attributes: dict[str, str] = {}
        while True:
            name = self._read_item()
            if not name:
                return attributes
            attributes[name] = self._read_item()

    def _read_item(self) -> str:
        while b"\0" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CleanupError("cleanup closed the connection")
            self.buffer += chunk
            if len(self.buffer) > 65536:
                raise CleanupError("cleanup sent an over-long attribute")
        item, _, self.buffer = self.buffer.partition(b"\0")
        return item.decode("utf-8", "replace")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


class PostfixQueue(Plugin):
    """Queues through Postfix's cleanup service."""

    # a socket path (starting with /) and FLAG_* words, in any order: read from self.args
    arguments = Arguments(free=True)

    def register(self, qp: Any, *args: str) -> None:
        words = list(args)
        self.socket = DEFAULT_SOCKET
        if words and words[0].startswith("/"):
            self.socket = words.pop(0)
        self.flags = 0
        for word in words:
            if word in FLAGS:
                self.flags |= FLAGS[word]
            else:
                self.log(LOGWARN, f"Ignoring unknown cleanup flag {word}")
        self.socket_env = os.environ.get("POSTFIXQUEUE")

    def sockets(self) -> list[str]:
        if self.socket_env:
            return [self.socket_env]
        return [line.strip() for line in self.qp.config("cleanup_sockets") if line.strip()] or [self.socket]

    def fail(self, code: int, text: str) -> int:
        self.log(LOGERROR, f"{code} {text}")
        self.qp.respond(code, text)
        return DONE

    def open_cleanup(self) -> CleanupStream | None:
        timeout = float(self.qp.config_int("postfix_queue_timeout", TIMEOUT) or TIMEOUT)
        for address in self.sockets():
            try:
                return CleanupStream(address, timeout)
            except (OSError, ValueError) as error:
                self.log(LOGWARN, f"could not open cleanup socket {address}: {error}")
        return None

    def hook_queue(self, transaction: Any) -> Any:
        stream = self.open_cleanup()
        if stream is None:
            return self.fail(451, "Unable to queue message (no cleanup service); try again later")
        try:
            queue_id, status, reason = self.inject(stream, transaction)
        except (OSError, CleanupError, ValueError) as error:
            self.log(LOGERROR, f"cleanup conversation failed: {error}")
            return self.fail(451, "Unable to queue message (cleanup failed); try again later")
        finally:
            stream.close()
        if status == 0:
            return OK, f"Queued! {message_id(transaction)} (Queue-Id: {queue_id})"
        for bit, permanent, text in STATUS:
            if status & bit:
                return self.fail(554 if permanent else 451, clean_text(reason) or text)
        return self.fail(451, f"Unable to queue message ({status}, {clean_text(reason)})")

    def inject(self, stream: CleanupStream, transaction: Any) -> tuple[str, int, str]:
        """Send one message; return (queue id, status, reason)."""
        queue_id = clean_text(stream.read_attributes().get("queue_id", ""))
        stream.send(b"flags\0%d\0\0" % self.flags)
        sender = transaction.sender.address if transaction.sender else ""
        envelope = [record(b"T", b"%d" % int(time.time())),
                    record(b"S", sender.encode("utf-8", "surrogateescape"))]
        envelope += [record(b"R", rcpt.address.encode("utf-8", "surrogateescape"))
                     for rcpt in transaction.recipients]
        envelope.append(record(b"M", b""))
        stream.send(b"".join(envelope))
        for chunk in content_records(transaction.iter_message(BLOCK_SIZE)):
            stream.send(chunk)
        stream.send(record(b"X", b"") + record(b"E", b""))
        answer = stream.read_attributes()
        try:
            status = int(answer.get("status", ""))
        except ValueError as error:
            raise CleanupError(f"no status from cleanup: {answer!r}") from error
        return queue_id, status, answer.get("reason", "")
