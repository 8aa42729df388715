"""The client side of the session: reading lines and blocks, writing replies.

`Transport` moves bytes on fds 0/1 (socket or pipes alike); a TLS layer can
replace it in place (`SmtpIO.transport`) after STARTTLS.  `SmtpIO` adds the
input buffer, the per-read timeout and the command line length limit: a
line longer than the limit is consumed to its end without being held in
memory and reported as `LineTooLong`.

Time limits (each `None` = none; the session sets them from config files):

* `Transport.write_timeout` — a reply must be written within it, else the
  client is treated as gone (`ConnectionLost`, and no more input is read):
  a client that never reads cannot block the server;
* `SmtpIO.session_deadline` — the monotonic time the whole session ends
  (`Timeout` from any read after it);
* `SmtpIO.command_timeout` — a command line must be complete this long
  after its first byte arrived (one byte per second cannot hold a session).
"""

from __future__ import annotations

import errno
import os
import select
import time


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
        self._poll_out: select.poll | None = None
        self.write_timeout: float | None = None
        self.broken = False  # a write failed or timed out: the client is gone

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
            except (InterruptedError, BlockingIOError):  # BlockingIOError: a spurious wake-up
                continue
            except ConnectionResetError:
                return b""
            except OSError as error:
                if error.errno in (errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                    return b""
                raise

    def write(self, data: bytes) -> None:
        if self.broken:
            raise ConnectionLost("the client stopped reading")
        if self.write_timeout is None:
            self._write_blocking(memoryview(data))
            return
        try:
            os.set_blocking(self.fd_out, False)
        except OSError as error:
            self.broken = True
            raise ConnectionLost(str(error)) from error
        try:
            self._write_with_deadline(memoryview(data), time.monotonic() + self.write_timeout)
        finally:
            try:
                os.set_blocking(self.fd_out, True)  # fd 0 may share the file description
            except OSError:
                pass

    def _write_blocking(self, view: memoryview) -> None:
        while view:
            try:
                written = os.write(self.fd_out, view)
            except InterruptedError:
                continue
            except OSError as error:
                self.broken = True
                raise ConnectionLost(str(error)) from error
            view = view[written:]

    def _write_with_deadline(self, view: memoryview, deadline: float) -> None:
        if self._poll_out is None:
            self._poll_out = select.poll()
            self._poll_out.register(self.fd_out, select.POLLOUT)
        while view:
            try:
                view = view[os.write(self.fd_out, view):]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as error:
                self.broken = True
                raise ConnectionLost(str(error)) from error
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll_out.poll(left * 1000):
                self.broken = True
                raise ConnectionLost(f"the client read no reply for {self.write_timeout:g} s")

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
        self.session_deadline: float | None = None
        self.command_timeout: float | None = None

    def _fill(self, timeout: float | None = None, deadline: float | None = None) -> bool:
        """Read more input into the buffer; False at end of input.

        Waits at most the read timeout, and never past `deadline` (a command's)
        or the session's deadline: past either, `Timeout`.
        """
        if self.eof or self.client_gone():
            self.eof = True
            return False
        wait = self.timeout if timeout is None else timeout
        for limit in (deadline, self.session_deadline):
            if limit is not None:
                left = limit - time.monotonic()
                if left <= 0:
                    raise Timeout()
                wait = left if wait is None else min(wait, left)
        if not self.transport.pending() and not self.transport.wait_readable(wait):
            raise Timeout()
        data = self.transport.read(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def read_block_fast(self) -> bytes:
        """As read_block, without copying a fresh read through the buffer (the DATA loop)."""
        if self.buffer:
            return self.read_block()
        if not self._fill_check():
            return b""
        data = self.transport.read(READ_SIZE)
        if not data:
            self.eof = True
        return data

    def _fill_check(self) -> bool:
        """The waiting part of _fill: True when a read may go ahead, False at end of input."""
        if self.eof or self.client_gone():
            self.eof = True
            return False
        wait = self.timeout
        if self.session_deadline is not None:
            left = self.session_deadline - time.monotonic()
            if left <= 0:
                raise Timeout()
            wait = left if wait is None else min(wait, left)
        if not self.transport.pending() and not self.transport.wait_readable(wait):
            raise Timeout()
        return True

    def client_gone(self) -> bool:
        """True once a write failed or timed out (on the plain transport or the one under TLS)."""
        transport = self.transport
        return bool(getattr(transport, "broken", False) or getattr(getattr(transport, "raw", None), "broken", False))

    def readline(self, limit: int) -> bytes | None:
        """The next line without its CRLF/LF, or None at end of input.

        A line longer than `limit` octets is read to its end, dropped, and
        reported by raising LineTooLong.  With `command_timeout`, the line must
        be complete that long after its first byte arrived.
        """
        scanned = 0
        deadline = None
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
            if deadline is None and self.buffer and self.command_timeout is not None:
                deadline = time.monotonic() + self.command_timeout
            if not self._fill(deadline=deadline):
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
