"""Receiving DATA: the message is streamed from the client into the transaction.

Only `<CRLF>.<CRLF>` ends a message.  Lines are dot-unstuffed and stored
with LF line ends in blocks; only the header lines are looked at one by
one, and nothing is held whole in memory.
"""

from __future__ import annotations

from .constants import DECLINED, DENY_DISCONNECT, DENYSOFT_DISCONNECT
from .header import Header, decode, is_field_start
from .qp import PluginFault

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .smtp import SMTP

DEFAULT_MAX_HEADER = 1024 * 1024
LONG_LINE_FLUSH = 65536


def unstuff(text: bytes, at_line_start: bool) -> bytes:
    """Remove the leading dot of every line that has more after it (RFC 5321 4.5.2).

    A line that is only "." here is content (it followed a bare LF, so it did
    not end the message) and is kept as it is.
    """
    if at_line_start and text.startswith(b".") and not text.startswith(b".\n"):
        text = text[1:]
    if b"\n.\n" in text:  # rare: go line by line to keep the lone dots
        first, *rest = text.split(b"\n")
        return b"\n".join([first] + [line[1:] if line[:1] == b"." and line != b"." else line for line in rest])
    return text.replace(b"\n.", b"\n")


class DataReceiver:
    """Streams one message from the client into the transaction.

    Works on blocks: the terminator is searched with `bytes.find`, CRLF is
    turned into LF and leading dots removed with `bytes.replace`; only the
    header lines are looked at one by one.
    """

    def __init__(self, smtp: SMTP) -> None:
        self.smtp = smtp
        self.io = smtp.io
        self.transaction = smtp.transaction
        self.max_size = smtp.config_int("databytes", 0)
        self.max_header = smtp.config_int("max_header_size", DEFAULT_MAX_HEADER)
        self.size = 0
        self.too_big = False
        self.header_too_big = False
        self.in_header = True
        self.header_lines: list[str] = []
        self.header_bytes = 0
        self.at_line_start = True
        self.prev_crlf = True
        self.fault = False

    def run(self) -> str:
        """'complete', 'incomplete' (EOF), 'barelf' or 'fault'."""
        pending = b""
        while True:
            block = self.io.read_block()
            if not block:
                return "incomplete"
            pending = pending + block if pending else block
            end = self._find_terminator(pending)
            if end >= 0:
                if not self._consume(pending[:end]):
                    return "barelf"
                self.io.unread(pending[end + 3:])
                self._finish_header()
                return "fault" if self.fault else "complete"
            cut = pending.rfind(b"\n") + 1
            if not cut and len(pending) > LONG_LINE_FLUSH:
                cut = len(pending) - (1 if pending.endswith(b"\r") else 0)
            if cut:
                if not self._consume(pending[:cut]):
                    return "barelf"
                pending = pending[cut:]

    def _find_terminator(self, data: bytes) -> int:
        """Offset of the "." line that ends the message, or -1."""
        if self.at_line_start and self.prev_crlf and data.startswith(b".\r\n"):
            return 0
        found = data.find(b"\r\n.\r\n")
        return found + 2 if found >= 0 else -1

    def _consume(self, data: bytes) -> bool:
        """Store one run of complete lines (or a flushed piece of a long line)."""
        if not data:
            return True
        if (self.at_line_start and data.startswith(b".\n")) or b"\n.\n" in data:
            return False
        next_line_start = data.endswith(b"\n")
        next_prev_crlf = data.endswith(b"\r\n") if next_line_start else self.prev_crlf
        text = unstuff(data.replace(b"\r\n", b"\n"), self.at_line_start)
        if self.in_header:
            text = self._consume_header(text)
        if text:
            self._store(text)
        self.at_line_start = next_line_start
        self.prev_crlf = next_prev_crlf
        return True

    def _consume_header(self, text: bytes) -> bytes:
        """Take header lines off the front of `text`; return what belongs to the body."""
        pos = 0
        while self.in_header and pos < len(text):
            newline = text.find(b"\n", pos)
            if newline < 0:
                piece = text[pos:]
                if self.header_lines and not self.header_lines[-1].endswith("\n"):
                    self.header_lines[-1] += decode(piece)
                else:
                    self.header_lines.append(decode(piece))
                self._count_header(len(piece))
                self._store(piece)
                return b""
            line = text[pos:newline + 1]
            continuing = bool(self.header_lines) and not self.header_lines[-1].endswith("\n")
            if continuing:
                self.header_lines[-1] += decode(line)
            elif line == b"\n":
                self._finish_header()
                return text[pos:]
            elif not (is_field_start(decode(line)) or (line[:1] in (b" ", b"\t") and self.header_lines)):
                self._finish_header()
                self._store(b"\n")  # no blank line after the header: give the body its separator
                return text[pos:]
            else:
                self.header_lines.append(decode(line))
            self._count_header(len(line))
            self._store(line)
            pos = newline + 1
        return text[pos:]

    def _count_header(self, size: int) -> None:
        self.header_bytes += size
        if self.max_header and self.header_bytes > self.max_header and not self.header_too_big:
            self.header_too_big = True
            self._finish_header()

    def _finish_header(self) -> None:
        if not self.in_header:
            return
        self.in_header = False
        self.transaction.header = Header(self.header_lines)
        self.header_lines = []
        try:
            rc, *msg = self.smtp.run_hooks("data_headers_end")
        except PluginFault:
            self.fault = True
            rc, msg = DECLINED, []
        if rc == DENY_DISCONNECT:
            self.smtp.respond(554, *(msg or ["Message denied"]))
            self.smtp.disconnect()
        elif rc == DENYSOFT_DISCONNECT:
            self.smtp.respond(421, *(msg or ["Message denied temporarily"]))
            self.smtp.disconnect()
        self.transaction.set_body_start()

    def _store(self, data: bytes) -> None:
        self.size += len(data)
        if self.max_size and self.size > self.max_size:
            self.too_big = True
        if not self.too_big and not self.header_too_big:
            self.transaction.body_write(data)
