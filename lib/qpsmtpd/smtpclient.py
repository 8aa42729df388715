"""The client side of SMTP and LMTP, shared by queue/smtp-forward and queue/lmtp.

`SmtpClient` reads whole (multi-line) replies over TCP or a unix socket,
every wait bounded by a time-out; `DotStuffer` turns stored message blocks
into DATA (CRLF line ends, leading dots doubled); `extensions` lists what an
EHLO/LHLO reply offers; `clean_text` makes a peer's text safe for our
replies and log lines.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable


def clean_text(text: str) -> str:
    """A peer's text for a reply or a log line: no control characters, at most 300 characters."""
    return "".join(char if char.isprintable() else " " for char in text).strip()[:300]


def extensions(ehlo: list[str] | None) -> set[str]:
    """The EHLO/LHLO keywords the next hop offers (upper case); none after HELO."""
    return {line.split()[0].upper() for line in (ehlo or [])[1:] if line.split()}


class DotStuffer:
    """Turns stored message blocks into SMTP DATA: CRLF line ends, leading dots doubled.

    Each CR LF, lone CR or lone LF is one line end; the state carried between
    blocks is whether the last block ended a line and whether it ended in CR.
    """

    def __init__(self) -> None:
        self.at_line_start = True
        self.pending_cr = False

    def feed(self, block: bytes) -> bytes:
        if not block:
            return b""
        if self.pending_cr and block.startswith(b"\n"):
            block = block[1:]  # the LF of a CR LF split across blocks
        self.pending_cr = block.endswith(b"\r")
        text = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not text:
            return b""
        if self.at_line_start and text.startswith(b"."):
            text = b"." + text
        text = text.replace(b"\n.", b"\n..")
        self.at_line_start = text.endswith(b"\n")
        return text.replace(b"\n", b"\r\n")

    def finish(self) -> bytes:
        """What ends the DATA: a line end if the message lacked one, then `.`."""
        return b".\r\n" if self.at_line_start else b"\r\n.\r\n"


class SmtpClient:
    """Whole (multi-line) replies over TCP (`host`, `port`) or a unix socket (`host` a path,
    `port` None); every connect, read and write bounded by `timeout`."""

    def __init__(self, host: str, port: int | None, timeout: float) -> None:
        import socket  # only when a message is forwarded: `socket` costs a session about 6 ms

        self.timeout = timeout
        if port is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(host)
            except OSError:
                self.sock.close()
                raise
        else:
            self.sock = socket.create_connection((host.strip("[]"), port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def reply(self, timeout: float | None = None) -> tuple[int, list[str]]:
        self.sock.settimeout(timeout or self.timeout)
        lines: list[str] = []
        while True:
            raw = self.file.readline(4096)
            if not raw.endswith(b"\n"):
                raise OSError("connection closed in the middle of a reply")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise OSError(f"malformed reply {clean_text(line)!r}")
            lines.append(line[4:])
            if line[3:4] != "-" or len(lines) > 100:
                return int(line[:3]), lines

    def command(self, text: str, timeout: float | None = None) -> tuple[int, list[str]]:
        self.send(text.encode("utf-8", "surrogateescape") + b"\r\n")
        return self.reply(timeout)

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def send_message(self, blocks: Iterable[bytes]) -> None:
        """After a 354: the message, dot-stuffed with CRLF line ends, and the final `.`."""
        stuffer = DotStuffer()
        for block in blocks:
            data = stuffer.feed(block)
            if data:
                self.send(data)
        self.send(stuffer.finish())

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass
