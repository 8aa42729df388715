"""The client side of clamd's protocol: VERSION and INSTREAM, NUL-terminated commands.

    zVERSION\\0                       -> "ClamAV 1.4.6/27512/Mon Jan  6 09:12:00 2025\\0"
    zINSTREAM\\0 <len><data> ... <0>  -> "stream: OK\\0" | "stream: Eicar-Signature FOUND\\0"
                                       | "INSTREAM size limit exceeded. ERROR\\0"

INSTREAM chunks are a 4-byte big-endian length and that many bytes; a
zero length ends the stream.  The message goes out in the caller's blocks,
never whole.  One connection per command.  Anything but a clear OK or
FOUND -- refused, silent, slow, closed mid-answer, an ERROR, garbage --
raises `daemonio.DaemonError` with the reason.

    verdict = instream("/run/clamav/clamd.ctl", transaction.iter_message(), timeout=20)
    verdict.virus        # None when clean, else the signature name
"""

from __future__ import annotations

from .daemonio import (Deadline, DaemonError, connect, describe, preview, receive_until, send,
                       shutdown_write)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Iterable

DEFAULT_PORT = 3310
MAX_ANSWER = 4096
MAX_CHUNK = 1 << 20
END_OF_STREAM = b"\0\0\0\0"


class Verdict:
    """clamd's answer to INSTREAM: `virus` is None for a clean stream."""

    __slots__ = ("answer", "virus")

    def __init__(self, answer: str, virus: str | None) -> None:
        self.answer = answer
        self.virus = virus


def version(endpoint: str | tuple[str, int], timeout: float = 5.0, connect_timeout: float = 5.0) -> str:
    """clamd's version line (`ClamAV 1.4.6/27512/...`); doubles as the ping."""
    deadline = Deadline(timeout)
    sock = connect(endpoint, deadline, connect_timeout)
    try:
        send(sock, b"zVERSION\0", deadline)
        answer = receive_until(sock, b"\0", deadline, MAX_ANSWER)
    finally:
        sock.close()
    text = _answer_text(answer, describe(endpoint))
    if not text.startswith("ClamAV"):
        raise DaemonError(f"garbage from {describe(endpoint)}: {preview(answer)}")
    return text


def instream(endpoint: str | tuple[str, int], blocks: Iterable[bytes], timeout: float = 20.0,
             connect_timeout: float = 5.0) -> Verdict:
    """Scan the bytes `blocks` yield; clamd's Verdict."""
    deadline = Deadline(timeout)
    where = describe(endpoint)
    sock = connect(endpoint, deadline, connect_timeout)
    try:
        try:
            send(sock, b"zINSTREAM\0", deadline)
            for block in blocks:
                for start in range(0, len(block), MAX_CHUNK):
                    chunk = block[start:start + MAX_CHUNK]
                    send(sock, len(chunk).to_bytes(4, "big"), deadline)
                    send(sock, chunk, deadline)
            send(sock, END_OF_STREAM, deadline)
        except DaemonError as error:
            # clamd stops reading when the stream passes StreamMaxLength: its answer says so
            answer = _answer_if_any(sock, deadline)
            if answer:
                return parse_verdict(answer, where)
            raise DaemonError(f"{where}: {error}") from None
        shutdown_write(sock)
        answer = receive_until(sock, b"\0", deadline, MAX_ANSWER)
    finally:
        sock.close()
    return parse_verdict(answer, where)


def _answer_if_any(sock, deadline: Deadline) -> bytes:
    try:
        return receive_until(sock, b"\0", deadline, MAX_ANSWER)
    except DaemonError:
        return b""


def _answer_text(answer: bytes, where: str) -> str:
    if not answer:
        raise DaemonError(f"{where} closed the connection without an answer")
    if not answer.endswith(b"\0"):
        raise DaemonError(f"{where} closed the connection mid-answer: {preview(answer)}")
    text = answer[:-1].decode("utf-8", "replace")
    if not text.isprintable():
        raise DaemonError(f"garbage from {where}: {preview(answer)}")
    return text


def parse_verdict(answer: bytes, where: str = "clamd") -> Verdict:
    """`stream: OK` -> clean; `stream: NAME FOUND` -> NAME; anything else raises DaemonError."""
    text = _answer_text(answer, where)
    if text == "stream: OK":
        return Verdict(text, None)
    if text.startswith("stream: ") and text.endswith(" FOUND"):
        name = text[len("stream: "):-len(" FOUND")].strip()
        if name and " " not in name:
            return Verdict(text, name)
    if text.endswith(" ERROR"):
        raise DaemonError(f"{where} failed: {text[:200]}")
    raise DaemonError(f"garbage from {where}: {preview(answer)}")
