"""One mail transaction: envelope, header, and the body spooled to disk.

The client's DATA is stored with LF line ends (CRLF converted), header
lines included, exactly as qpsmtpd stores it; `set_body_start()` marks where
the body begins (at the blank separator line).  Up to `size_threshold`
bytes stay in memory, beyond that the data goes to a 0600 file in the spool
directory, removed when the transaction ends.

A queue plugin writes `header.as_bytes()` and then the body from
`body_resetpos()`: line by line with `body_getline()`, or in blocks with
`body_read(n)`; `iter_message()` does both.
"""

from __future__ import annotations

import os
import time

from .header import Header, HeaderField
from .notes import Notes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import IO, Iterator
    from .address import Address
    from .qp import Qpsmtpd

BLOCK_SIZE = 65536


class Transaction:
    """Envelope, notes, header and body of one message."""

    def __init__(self, qp: Qpsmtpd | None = None) -> None:
        self.qp = qp
        self.sender: Address | None = None
        self.recipients: list[Address] = []
        self.header: Header | None = None
        self.notes = Notes()
        self.started = time.time()
        self._memory: bytearray | None = bytearray()
        self._file: IO[bytes] | None = None
        self._filename: str | None = None
        self._size = 0
        self._body_start = 0
        self._header_size = 0
        self._read_pos = 0
        self._temp_files: list[str] = []
        self._temp_dirs: list[str] = []
        self.authentication_results_field: HeaderField | None = None

    # -- envelope -------------------------------------------------------
    def add_recipient(self, recipient: Address) -> None:
        if recipient:
            self.recipients.append(recipient)

    def remove_recipient(self, recipient: Address) -> None:
        self.recipients = [rcpt for rcpt in self.recipients if rcpt.address != recipient.address]

    # -- body storage ---------------------------------------------------
    def _threshold(self) -> int:
        return self.qp.size_threshold() if self.qp else 0

    def body_write(self, data: bytes | str) -> None:
        """Append raw message data (header lines included, LF line ends)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if self._file is not None:
            self._file.seek(0, os.SEEK_END)
            self._file.write(data)
        else:
            assert self._memory is not None
            self._memory += data
        self._size += len(data)
        if self._file is None and self._size >= self._threshold():
            self.body_spool()

    def body_spool(self) -> None:
        """Move the data from memory to a 0600 file in the spool directory."""
        if self._file is not None:
            return
        if self.qp is None:
            raise RuntimeError("cannot spool a transaction without a Qpsmtpd object")
        filename = self.qp.temp_file()
        descriptor = os.open(filename, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(descriptor, "w+b")
        self._filename = filename
        if self._memory:
            self._file.write(self._memory)
        self._memory = None

    def body_filename(self) -> str:
        """The spool file's name (spooling now if needed), flushed for other readers."""
        self.body_spool()
        assert self._file is not None and self._filename is not None
        self._file.flush()
        return self._filename

    def body_fh(self) -> IO[bytes] | None:
        """The open spool file, or None while the data is still in memory."""
        return self._file

    def set_body_start(self) -> None:
        self._body_start = self._size
        self._header_size = self._size

    @property
    def body_start(self) -> int:
        return self._body_start

    def data_size(self) -> int:
        """Bytes received after DATA (LF line ends), header lines included."""
        return self._size

    def body_length(self) -> int:
        """Bytes of the body, from the blank line after the header on."""
        if not self._size:
            return 0
        return self._size - self._header_size

    def body_resetpos(self) -> None:
        self._read_pos = self._body_start

    def body_current_pos(self) -> int:
        return self._read_pos

    def body_getline(self) -> bytes | None:
        """The next body line (with its "\\n"), or None at the end."""
        if self._file is not None:
            self._file.seek(self._read_pos)
            line = self._file.readline()
        else:
            assert self._memory is not None
            end = self._memory.find(b"\n", self._read_pos)
            end = len(self._memory) if end < 0 else end + 1
            line = bytes(self._memory[self._read_pos:end])
        if not line:
            return None
        self._read_pos += len(line)
        return line

    def body_read(self, size: int = BLOCK_SIZE) -> bytes:
        """Up to `size` bytes of the body from the current position (b'' at the end)."""
        if self._file is not None:
            self._file.seek(self._read_pos)
            data = self._file.read(size)
        else:
            assert self._memory is not None
            data = bytes(self._memory[self._read_pos:self._read_pos + size])
        self._read_pos += len(data)
        return data

    def body_replace(self, source: IO[bytes], block_size: int = BLOCK_SIZE) -> None:
        """Replace the body with the content of `source` (LF line ends, read in blocks).

        The header is kept; the blank separator line is written before the new
        body, so `iter_message()` yields the header, then the new body.
        """
        if self._file is not None:
            self._file.seek(self._body_start)
            self._file.truncate()
        else:
            assert self._memory is not None
            del self._memory[self._body_start:]
        self._size = self._body_start
        self._read_pos = self._body_start
        self.body_write(b"\n")
        for block in iter(lambda: source.read(block_size), b""):
            self.body_write(block)

    def body_as_bytes(self) -> bytes:
        self.body_resetpos()
        return b"".join(iter(lambda: self.body_read(1 << 20), b""))

    def iter_message(self, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
        """The message as queued: the header, then the body in blocks."""
        yield self.header.as_bytes() if self.header is not None else b""
        self.body_resetpos()
        while True:
            block = self.body_read(block_size)
            if not block:
                return
            yield block

    def body_region(self) -> tuple[int, int, int] | None:
        """(file descriptor, offset, length) of the body in the spool file, flushed, for
        `os.sendfile`; None while the body is still in memory."""
        if self._file is None:
            return None
        self._file.flush()
        return self._file.fileno(), self._body_start, self._size - self._body_start

    def message_size(self) -> int:
        """Size of what `iter_message()` yields."""
        header = len(self.header.as_bytes()) if self.header is not None else 0
        return header + self.body_length()

    # -- temporary files ------------------------------------------------
    def track_temp_file(self, path: str) -> None:
        self._temp_files.append(path)

    def track_temp_dir(self, path: str) -> None:
        self._temp_dirs.append(path)

    def close(self) -> None:
        """Remove the spool file and every temp file and dir of this transaction."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for path in ([self._filename] if self._filename else []) + self._temp_files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as error:
                if self.qp:
                    self.qp.log(3, f"Could not unlink {path}: {error}")
        if self._temp_dirs:
            import shutil  # only when a plugin made temp dirs: keeps start-up lean

            for path in self._temp_dirs:
                shutil.rmtree(path, ignore_errors=True)
        self._filename = None
        self._temp_files = []
        self._temp_dirs = []
        self._memory = bytearray()
