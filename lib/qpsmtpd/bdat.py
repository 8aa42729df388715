"""CHUNKING (RFC 3030): `BDAT <size> [LAST]`, the message in counted chunks.

A chunk is exactly `size` octets read from the input, never a line, so nothing
in it is ever a command, and a command after it starts exactly where the
client said.  The chunks go through the same machinery as DATA
(`qpsmtpd.data.DataReceiver`): header parsing, `data_headers_end`,
`max_header_size`, `databytes`, spooling; the same `data` hook before the
first chunk and the same `data_post_headers` ... `queue` hooks after the
LAST one, whose reply is the queue's.

How the bytes are stored: CR LF becomes LF (as DATA stores it), also when
the CR ends one chunk and the LF starts the next, so where the client cut
its chunks never changes the message; there is no dot-unstuffing and no
terminator (".\\r\\n" in a chunk is content, and a next hop gets it
dot-stuffed by smtp-forward).  Lone CR and lone LF are stored as DATA
stores them.  BINARYMIME is not offered: messages are stored with LF line
ends, so binary content could not be passed on unchanged.

Replies: `250 2.0.0 <n> octets received` for each chunk but the last;
`503 5.5.1` for BDAT without MAIL or RCPT, after DATA-less failure of an
earlier chunk, or DATA after BDAT; `552 5.3.4` as soon as the chunks exceed
`databytes` or the header `max_header_size`; `501 5.5.4` for a bad size
argument.  A refused chunk is still read to its end (never run as commands),
and the rest of that transaction's chunks are refused until MAIL or RSET.
"""

from __future__ import annotations

from .constants import LOGINFO, LOGNOTICE
from .data import DataReceiver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .smtp import SMTP
    from .transaction import Transaction

MAX_SIZE_DIGITS = 20


def parse_bdat(line: str | None) -> tuple[int, bool] | None:
    """`<size> [LAST]` -> (size, last); None when it is not that."""
    words = (line or "").split()
    if not 1 <= len(words) <= 2:
        return None
    size_text = words[0]
    if not (size_text.isascii() and size_text.isdigit()) or len(size_text) > MAX_SIZE_DIGITS:
        return None
    if len(words) == 2 and words[1].upper() != "LAST":
        return None
    return int(size_text), len(words) == 2


class ChunkReceiver(DataReceiver):
    """DataReceiver fed with counted chunks instead of a dot-terminated stream."""

    def __init__(self, smtp: SMTP) -> None:
        super().__init__(smtp)
        self.pending = b""          # the start of a line whose end has not arrived
        self.received = 0           # octets of all chunks

    def feed(self, block: bytes) -> None:
        """Octets of a chunk (any cut): complete lines are handled, a partial one held."""
        if not block:
            return
        self.received += len(block)
        old_length = len(self.pending)
        self.pending = self.pending + block if self.pending else block
        cut = self.pending.rfind(b"\n", old_length) + 1
        if not cut:
            cut = self._partial_cut(self.pending)
        if cut:
            data, self.pending = self.pending[:cut], self.pending[cut:]
            self._handle(data)

    def finish(self) -> None:
        """After the LAST chunk: the held partial line, then the end of the header.

        A message whose last line has no line end gets one (a DATA message always has one:
        the CR LF before the final dot), so the last line is a line for the header parser
        and for every queue."""
        data, self.pending = self.pending, b""
        if data and not data.endswith(b"\n"):
            data += b"\n"
        self._handle(data)
        if self.store_error is None:
            try:
                self._finish_header()
            except Exception as error:  # noqa: BLE001 - as in DATA: 451, never a traceback
                from .smtp import Disconnect

                if isinstance(error, Disconnect):
                    raise
                self._storage_failed(error)

    def _handle(self, data: bytes) -> None:
        if not data or self.store_error is not None:
            return
        try:
            text = data.replace(b"\r\n", b"\n")
            self.at_line_start = text.endswith(b"\n")
            if self.in_header:
                text = self._consume_header(text)
            if text:
                self._store(text)
        except Exception as error:
            from .smtp import Disconnect

            if isinstance(error, Disconnect):
                raise
            self._storage_failed(error)


class BdatState:
    """The chunks of one transaction."""

    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction
        self.receiver: ChunkReceiver | None = None
        self.failed = False

    def active(self, transaction: Transaction) -> bool:
        return self.transaction is transaction


def read_chunk(smtp: SMTP, size: int, receiver: ChunkReceiver | None) -> bool:
    """Read exactly `size` octets, handing them to `receiver` (None: discard); False at end of input."""
    io = smtp.io
    left = size
    while left > 0:
        block = io.read_block()
        if not block:
            return False
        if len(block) > left:
            io.unread(block[left:])
            block = block[:left]
        left -= len(block)
        if receiver is not None:
            receiver.feed(block)
    return True


def handle_bdat(smtp: SMTP, line: str | None) -> None:
    """One BDAT command and its chunk."""
    parsed = parse_bdat(line)
    if parsed is None:
        smtp.respond(501, "Syntax error in BDAT parameters (BDAT <size> [LAST])", esc="5.5.4")
        return
    size, last = parsed
    transaction = smtp.transaction
    state = smtp.bdat_state
    if state is None or not state.active(transaction):
        state = smtp.bdat_state = BdatState(transaction)
    refusal = _refusal(smtp, state)
    if refusal is None and state.receiver is None:
        refusal = _start(smtp, state)
        if refusal == "answered":  # the data hook refused and answered; the chunk is still read
            state.failed = True
            _discard(smtp, size)
            return
    if refusal is not None:
        state.failed = True
        if not _discard(smtp, size):
            return
        smtp.respond(503, refusal, esc="5.5.1")
        return
    receiver = state.receiver
    assert receiver is not None
    if receiver.max_size and receiver.received + size > receiver.max_size:
        receiver.too_big = True  # refused on the declared size: the chunk is read, never stored
        if _discard(smtp, size):
            _too_big(smtp, receiver, state)
        return
    if not read_chunk(smtp, size, receiver):
        smtp.log(LOGNOTICE, "connection ended inside a BDAT chunk: nothing queued")
        state.failed = True
        return
    if receiver.too_big or receiver.header_too_big:
        _too_big(smtp, receiver, state)
        return
    if not last:
        smtp.respond(250, f"{size} octets received", esc="2.0.0")
        return
    receiver.finish()
    smtp.log(LOGINFO, f"BDAT LAST: {receiver.received} octets in the message")
    state.receiver = None
    smtp.bdat_state = None
    smtp.finish_message(receiver, "fault" if receiver.fault or receiver.store_error is not None else "complete")


def _refusal(smtp: SMTP, state: BdatState) -> str | None:
    if state.failed:
        return "BDAT after a refused chunk: send MAIL or RSET first"
    transaction = smtp.transaction
    if transaction.sender is None:
        return "MAIL first"
    if not transaction.recipients:
        return "RCPT first"
    return None


def _start(smtp: SMTP, state: BdatState) -> str | None:
    """The `data` hook before the first chunk; 'answered' when it refused (and replied)."""
    replies_before = smtp.replies_sent
    smtp.bdat_starting = True
    try:
        smtp.run_hooks("data")
    finally:
        smtp.bdat_starting = False
    if smtp.replies_sent != replies_before or not smtp.bdat_allowed:
        return "answered"
    smtp.bdat_allowed = False
    state.receiver = ChunkReceiver(smtp)
    return None


def _discard(smtp: SMTP, size: int) -> bool:
    if read_chunk(smtp, size, None):
        return True
    smtp.log(LOGNOTICE, "connection ended inside a BDAT chunk")
    return False


def _too_big(smtp: SMTP, receiver: ChunkReceiver, state: BdatState) -> None:
    state.failed = True
    state.receiver = None
    what = "Message too big!" if receiver.too_big else "Message header too big!"
    smtp.log_decision("data", "qpsmtpd", 552, [what])
    smtp.respond(552, what, esc="5.3.4")
    smtp.reset_transaction()
    smtp.bdat_state = BdatState(smtp.transaction)
    smtp.bdat_state.failed = True
