"""The client side of spamd's protocol (SPAMC/SPAMD 1.x), as the spamassassin plugin needs it.

One request per connection:

    HEADERS SPAMC/1.5\\r\\n
    Content-length: <bytes of the message>\\r\\n
    User: <name>\\r\\n
    \\r\\n
    <the message>

and spamd answers

    SPAMD/1.1 0 EX_OK\\r\\n
    Content-length: <n>\\r\\n
    Spam: True ; 1003.3 / 5.0\\r\\n
    \\r\\n
    <the message's header as SpamAssassin rewrote it: X-Spam-Status ...>

The message goes out in blocks as the caller yields them (the length must
be known first), so a big message is never held whole.  Everything that is
not a complete EX_OK answer -- refused, silent, slow, closed mid-answer, an
error status, garbage -- raises `daemonio.DaemonError` with the reason.

    result = check(("127.0.0.1", 783), blocks, length, user="nobody", timeout=20)
    result.headers["X-Spam-Status"]   # 'Yes, score=1003.3 required=5.0 tests=GTUBE,...'
"""

from __future__ import annotations

from .daemonio import (Deadline, DaemonError, connect, describe, preview, receive, send, send_blocks,
                       shutdown_write)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Iterable

DEFAULT_PORT = 783
PROTOCOL = b"SPAMC/1.5"
MAX_ANSWER = 4 << 20  # a HEADERS answer is the message's header: far below this


class SpamdResult:
    """spamd's answer: the status line, the protocol headers and the X-Spam-* fields of the rewritten header."""

    __slots__ = ("status", "protocol_headers", "headers")

    def __init__(self, status: str, protocol_headers: dict[str, str], headers: dict[str, str]) -> None:
        self.status = status
        self.protocol_headers = protocol_headers
        self.headers = headers  # name -> value (continuation lines kept, joined with "\n")


def request_head(length: int, user: str | None, command: bytes = b"HEADERS") -> bytes:
    head = [command + b" " + PROTOCOL, b"Content-length: %d" % length]
    if user:
        safe_user = "".join(char for char in user if char.isprintable())
        head.append(b"User: " + safe_user.encode("utf-8", "surrogateescape"))
    return b"\r\n".join(head) + b"\r\n\r\n"


def check(endpoint: str | tuple[str, int], blocks: Iterable[bytes], length: int, user: str | None = None,
          timeout: float = 20.0, connect_timeout: float = 5.0) -> SpamdResult:
    """Send `length` bytes (yielded by `blocks`) for a HEADERS check; spamd's parsed answer."""
    deadline = Deadline(timeout)
    sock = connect(endpoint, deadline, connect_timeout)
    try:
        send(sock, request_head(length, user), deadline)
        try:
            send_blocks(sock, blocks, deadline)
        except DaemonError as error:
            # spamd may have refused the request and closed: its answer says why
            answer = _read_answer(sock, deadline, tolerate_errors=True)
            raise DaemonError(_why_refused(answer) or str(error)) from None
        shutdown_write(sock)
        answer = _read_answer(sock, deadline)
    finally:
        sock.close()
    return parse_answer(answer, describe(endpoint))


def _read_answer(sock, deadline: Deadline, tolerate_errors: bool = False) -> bytes:
    """The whole answer: up to the close, or until Content-length bytes of body arrived."""
    data = bytearray()
    expected_total = None
    try:
        while expected_total is None or len(data) < expected_total:
            chunk = receive(sock, deadline)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_ANSWER:
                raise DaemonError(f"answer longer than {MAX_ANSWER} bytes")
            if expected_total is None:
                expected_total = _expected_total(data)
    except DaemonError:
        if not tolerate_errors:
            raise
    return bytes(data)


def _expected_total(data: bytearray) -> int | None:
    """Bytes the whole answer has, once its protocol header is complete and names a length."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _colon, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return end + 4 + int(value.strip())
    return None


def _why_refused(answer: bytes) -> str | None:
    first = answer.split(b"\r\n", 1)[0]
    return f"spamd refused the request: {preview(first, 120)}" if first.startswith(b"SPAMD/") else None


def parse_answer(answer: bytes, where: str = "spamd") -> SpamdResult:
    """spamd's answer to HEADERS as a SpamdResult; DaemonError when it is not a complete EX_OK answer."""
    if not answer:
        raise DaemonError(f"{where} closed the connection without an answer")
    head, separator, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0]
    words = status.split(None, 2)
    if len(words) < 2 or not words[0].startswith(b"SPAMD/"):
        raise DaemonError(f"garbage from {where}: {preview(answer)}")
    if words[1] != b"0" or b"EX_OK" not in status:
        raise DaemonError(f"{where} answered {preview(status, 120)}")
    if not separator:
        raise DaemonError(f"{where} closed the connection mid-answer")
    protocol_headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            protocol_headers[name.strip().decode("ascii", "replace").lower()] = value.strip().decode("ascii", "replace")
    declared = protocol_headers.get("content-length", "")
    if declared.isdigit() and len(body) < int(declared):
        raise DaemonError(f"{where} closed the connection mid-answer ({len(body)} of {declared} bytes)")
    return SpamdResult(status.decode("ascii", "replace"), protocol_headers, spam_fields(body))


def spam_fields(header_block: bytes) -> dict[str, str]:
    """The `X-Spam-*` fields of a header block (LF or CRLF lines), folds kept."""
    fields: dict[str, str] = {}
    current = None
    for raw in header_block.decode("utf-8", "surrogateescape").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            break  # the end of the header
        if line[:1] in (" ", "\t"):
            if current is not None:
                fields[current] += "\n" + line
            continue
        name, colon, value = line.partition(":")
        current = None
        if colon and name.lower().startswith("x-spam-") and " " not in name:
            current = name
            fields[name] = value.strip(" \t")
    return fields
