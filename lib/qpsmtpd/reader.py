"""The client side of the session: reading lines and blocks, writing replies.

`Transport` moves bytes on fds 0/1 (socket or pipes alike); a TLS layer can
replace it in place (`SmtpIO.transport`) after STARTTLS.  `SmtpIO` adds the
input buffer, the per-read timeout and the command line length limit: a
line longer than the limit is consumed to its end without being held in
memory and reported as `LineTooLong`.
"""

from __future__ import annotations

import errno
import os
import select


class Timeout(Exception):
    """No data from the client within the configured time."""


class ConnectionLost(Exception):
    """The client went away while we were writing."""


class LineTooLong(Exception):
    """A command line exceeded the limit; it has been discarded."""


READ_SIZE = 262144


class Transport:
    """Plain bytes over two file descriptors."""

    def __init__(self, fd_in: int = 0, fd_out: int = 1) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self._poll = select.poll()
        self._poll.register(fd_in, select.POLLIN | select.POLLHUP | select.POLLERR)

    def wait_readable(self, timeout: float | None) -> bool:
        millis = None if timeout is None else max(0, int(timeout * 1000))
        while True:
            try:
                return bool(self._poll.poll(millis))
            except InterruptedError:
                continue

    def read(self, size: int = READ_SIZE) -> bytes:
        while True:
            try:
                return os.read(self.fd_in, size)
            except InterruptedError:
                continue
            except ConnectionResetError:
                return b""
            except OSError as error:
                if error.errno in (errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                    return b""
                raise

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd_out, view)
            except InterruptedError:
                continue
            except OSError as error:
                raise ConnectionLost(str(error)) from error
            view = view[written:]

    def pending(self) -> bool:
        """Data that is already decoded and waiting (TLS buffers); none for plain fds."""
        return False


class SmtpIO:
    """Buffered, time-limited reading of commands and message data."""

    def __init__(self, transport: Transport, timeout: float = 1200.0) -> None:
        self.transport = transport
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    def _fill(self, timeout: float | None = None) -> bool:
        """Read more input into the buffer; False at end of input."""
        if self.eof:
            return False
        wait = self.timeout if timeout is None else timeout
        if not self.transport.pending() and not self.transport.wait_readable(wait):
            raise Timeout()
        data = self.transport.read(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def readline(self, limit: int) -> bytes | None:
        """The next line without its CRLF/LF, or None at end of input.

        A line longer than `limit` octets is read to its end, dropped, and
        reported by raising LineTooLong.
        """
        scanned = 0
        while True:
            newline = self.buffer.find(b"\n", scanned)
            if newline >= 0:
                if newline > limit:
                    del self.buffer[:newline + 1]
                    raise LineTooLong()
                line = bytes(self.buffer[:newline])
                del self.buffer[:newline + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buffer) > limit:
                self._discard_to_newline()
                raise LineTooLong()
            scanned = len(self.buffer)
            if not self._fill():
                return None

    def _discard_to_newline(self) -> None:
        while True:
            newline = self.buffer.find(b"\n")
            if newline >= 0:
                del self.buffer[:newline + 1]
                return
            self.buffer.clear()
            if not self._fill():
                return

    def read_block(self) -> bytes:
        """Whatever input is buffered, else the next read (b'' at end of input)."""
        if not self.buffer and not self._fill():
            return b""
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def unread(self, data: bytes) -> None:
        """Give back input read past the end of the message (pipelined commands)."""
        if data:
            self.buffer[:0] = data

    def has_pending_input(self) -> bool:
        """True when the client has already sent more (early talkers, pipelining)."""
        return bool(self.buffer) or self.transport.pending() or self.transport.wait_readable(0)

    def discard_buffer(self) -> int:
        """Drop buffered input (plaintext sent before a TLS handshake); returns how much."""
        dropped = len(self.buffer)
        self.buffer.clear()
        return dropped

    def write(self, data: bytes) -> None:
        self.transport.write(data)
