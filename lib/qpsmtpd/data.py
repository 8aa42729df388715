"""Receiving DATA: the message is streamed from the client into the transaction.

Only `<CRLF>.<CRLF>` ends a message.  Lines are dot-unstuffed and stored
with LF line ends in blocks; only the header lines are looked at one by
one, and nothing is held whole in memory.

Three rules keep the message safe whatever the network does:

* Body bytes are never commands.  Whatever fails while the message is
  received (the spool disk is full or gone, a bug), the rest of the message
  is still read up to `<CRLF>.<CRLF>`, without storing it, and the session
  answers 451 for it (outcome "fault").
* The same bytes give the same message whatever the read sizes.  A header
  line is only looked at once it is complete: a partial line is held until
  its end arrives, unless it already exceeds what is left of
  `max_header_size`, and then the header is too big however the line
  continues.  Only body lines are flushed in pieces (over 64 KiB).
* Linear work.  The pending input is searched only where new bytes arrived,
  and a folded header field is joined once, when the next field starts.
"""

from __future__ import annotations

from .constants import LOGERROR, LOGWARN
from .header import Header, decode, is_field_start
from .qp import PluginFault

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .smtp import SMTP

DEFAULT_MAX_HEADER = 1024 * 1024
LONG_LINE_FLUSH = 65536
TERMINATOR = b"\r\n.\r\n"


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


def header_limit(smtp: SMTP) -> int:
    """`max_header_size`, bounded: 0, a negative or a bad value means the default (1 MiB)."""
    limit = smtp.config_int("max_header_size", DEFAULT_MAX_HEADER)
    if limit <= 0:
        smtp.log(LOGWARN, f"max_header_size {limit} is not a limit; using {DEFAULT_MAX_HEADER}")
        return DEFAULT_MAX_HEADER
    return limit


class DataReceiver:
    """Streams one message from the client into the transaction.

    Works on blocks: the terminator is searched with `bytearray.find` in the
    newly arrived bytes only, CRLF is turned into LF and leading dots removed
    with `bytes.replace`; only the header lines are looked at one by one.
    """

    def __init__(self, smtp: SMTP) -> None:
        self.smtp = smtp
        self.io = smtp.io
        self.transaction = smtp.transaction
        self.max_size = smtp.config_int("databytes", 0)
        self.max_header = header_limit(smtp)
        self.size = 0
        self.too_big = False
        self.header_too_big = False
        self.in_header = True
        self.header_fields: list[str] = []   # complete fields, folds included
        self.field_lines: list[str] = []     # the lines of the field being read
        self.header_bytes = 0
        self.at_line_start = True
        self.prev_crlf = True
        self.fault = False        # a plugin failed in data_headers_end
        self.store_error: BaseException | None = None  # storing failed: the rest is discarded

    def run(self) -> str:
        """'complete', 'incomplete' (EOF), 'barelf' or 'fault' (the message is read to its end)."""
        pending = b""  # the start of a line whose end has not arrived (no newline in it)
        read_block = getattr(self.io, "read_block_fast", self.io.read_block)
        while True:
            block = read_block()
            if not block:
                return "incomplete"
            searched = max(0, len(pending) - (len(TERMINATOR) - 1))
            old_length = len(pending)
            pending = pending + block if pending else block
            end = self._find_terminator(pending, searched)
            if end >= 0:
                if not self._consume_safely(pending[:end], final=True):
                    return "barelf"
                self.io.unread(pending[end + 3:])
                return "fault" if self.fault or self.store_error is not None else "complete"
            cut = pending.rfind(b"\n", old_length) + 1  # older bytes hold no newline: they were cut
            if not cut:
                cut = self._partial_cut(pending)
            if cut:
                if not self._consume_safely(pending if cut == len(pending) else pending[:cut]):
                    return "barelf"
                pending = pending[cut:]

    def _partial_cut(self, pending: bytes) -> int:
        """How much of a line without its end may be handled now (0: wait for more)."""
        limit = LONG_LINE_FLUSH
        if self.in_header and self.store_error is None:
            # a line this long overflows the header however it ends (+2: a stuffed dot, a CR)
            limit = self.max_header - self.header_bytes + 2
        if len(pending) <= limit:
            return 0
        return len(pending) - (1 if pending.endswith(b"\r") else 0)

    def _find_terminator(self, data: bytes, start: int) -> int:
        """Offset of the "." line that ends the message, or -1."""
        if start == 0 and self.at_line_start and self.prev_crlf and data.startswith(b".\r\n"):
            return 0
        found = data.find(TERMINATOR, start)
        return found + 2 if found >= 0 else -1

    def _consume_safely(self, data: bytes, final: bool = False) -> bool:
        """`_consume`, but a failure only stops storing: the message is still read to its end."""
        if self.store_error is None:
            try:
                ok = self._consume(data)
                if ok and final:
                    self._finish_header()
                return ok
            except Exception as error:  # disk full, spool dir gone, a bug: never read body bytes as commands
                from .smtp import Disconnect  # a *_DISCONNECT verdict ends the session: not a failure

                if isinstance(error, Disconnect):
                    raise
                self._storage_failed(error)
        return self._discard(data)

    def _discard(self, data: bytes) -> bool:
        """Read past `data` without storing it (False: a bare-LF terminator)."""
        if not data:
            return True
        if not self._check_bare_lf(data):
            return False
        self.at_line_start = data.endswith(b"\n")
        if self.at_line_start:
            self.prev_crlf = data.endswith(b"\r\n")
        return True

    def _check_bare_lf(self, data: bytes) -> bool:
        return not ((self.at_line_start and data.startswith(b".\n")) or b"\n.\n" in data)

    def _storage_failed(self, error: BaseException) -> None:
        self.store_error = error
        self.in_header = False
        self.smtp.log(LOGERROR, f"storing the message failed ({type(error).__name__}: {error}); "
                                "reading it to its end without storing")

    def _consume(self, data: bytes) -> bool:
        """Store one run of complete lines (or a flushed piece of a long line)."""
        if not data:
            return True
        if b"\n." not in data and not (self.at_line_start and data[:1] == b"."):
            # the common case, one scan: no line starts with a dot, so there is nothing to
            # unstuff and no bare-LF terminator (".\n" after a newline) to refuse
            text = data.replace(b"\r\n", b"\n")
        elif not self._check_bare_lf(data):
            return False
        else:
            text = unstuff(data.replace(b"\r\n", b"\n"), self.at_line_start)
        next_line_start = data.endswith(b"\n")
        next_prev_crlf = data.endswith(b"\r\n") if next_line_start else self.prev_crlf
        self.at_line_start = next_line_start
        self.prev_crlf = next_prev_crlf
        if self.in_header:
            text = self._consume_header(text)
        if text:
            self._store(text)
        return True

    def _consume_header(self, text: bytes) -> bytes:
        """Take header lines off the front of `text`; return what belongs to the body."""
        pos = 0
        while self.in_header and pos < len(text):
            newline = text.find(b"\n", pos)
            line = text[pos:] if newline < 0 else text[pos:newline + 1]
            if line == b"\n":
                self._finish_header()
                return text[pos:]
            if newline < 0 or self.header_bytes + len(line) > self.max_header:
                # too long for the header, whatever it is (a piece of a line is only handed
                # over here once it is too long): the same verdict for any read size
                self.header_bytes += len(line)
                self._header_overflow()
                return b""
            decoded = decode(line)
            if self.field_lines and line[:1] in (b" ", b"\t"):
                self.field_lines.append(decoded)
            elif is_field_start(decoded):
                self._close_field()
                self.field_lines.append(decoded)
            else:
                self._finish_header()
                self._store(b"\n")  # no blank line after the header: give the body its separator
                return text[pos:]
            self.header_bytes += len(line)
            self._store(line)
            pos = newline + 1
        return text[pos:]

    def _close_field(self) -> None:
        if self.field_lines:
            self.header_fields.append("".join(self.field_lines))  # one join per field: linear folding
            self.field_lines = []

    def _header_overflow(self) -> None:
        self.header_too_big = True
        self._finish_header()

    def _finish_header(self) -> None:
        if not self.in_header:
            return
        self.in_header = False
        self._close_field()
        self.transaction.header = Header(self.header_fields)
        self.header_fields = []
        try:
            # the reply table answers a *_DISCONNECT at once (and ends the session) and keeps a
            # DENY/DENYSOFT for the end of the message: SMTP.data_headers_end_respond
            self.smtp.run_hooks("data_headers_end")
        except PluginFault:
            self.fault = True
        self.transaction.set_body_start()

    def _store(self, data: bytes) -> None:
        self.size += len(data)
        if self.max_size and self.size > self.max_size:
            self.too_big = True
        if not self.too_big and not self.header_too_big:
            self.transaction.body_write(data)
