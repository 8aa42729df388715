"""The line reader on real pipes: line limits without buffering, time-outs, blocks and unread."""

import os
import threading
import time

import pytest

from qpsmtpd.reader import LineTooLong, SmtpIO, Timeout, Transport


@pytest.fixture
def pipe_io():
    read_fd, write_fd = os.pipe()
    io = SmtpIO(Transport(read_fd, write_fd), timeout=2)
    yield io, write_fd
    os.close(read_fd)
    try:
        os.close(write_fd)
    except OSError:
        pass


def test_lines_with_crlf_or_lf(pipe_io):
    io, writer = pipe_io
    os.write(writer, b"HELO a\r\nNOOP\nQUIT\r\n")
    assert [io.readline(100), io.readline(100), io.readline(100)] == [b"HELO a", b"NOOP", b"QUIT"]


def test_too_long_line_is_discarded_and_the_next_line_read(pipe_io):
    io, writer = pipe_io

    def feed():
        for _ in range(50):
            os.write(writer, b"x" * 10000)
        os.write(writer, b"\r\nNOOP\r\n")

    thread = threading.Thread(target=feed)
    thread.start()
    with pytest.raises(LineTooLong):
        io.readline(512)
    assert len(io.buffer) < 300_000  # never held the 500 kB line whole
    assert io.readline(512) == b"NOOP"
    thread.join()


def test_timeout(pipe_io):
    io, _writer = pipe_io
    io.timeout = 0.3
    started = time.monotonic()
    with pytest.raises(Timeout):
        io.readline(100)
    assert 0.25 < time.monotonic() - started < 2


def test_eof_returns_none(pipe_io):
    io, writer = pipe_io
    os.write(writer, b"partial")
    os.close(writer)
    assert io.readline(100) is None


def test_blocks_unread_and_pending(pipe_io):
    io, writer = pipe_io
    assert not io.has_pending_input()
    os.write(writer, b"body\r\n.\r\nQUIT\r\n")
    assert io.has_pending_input()
    block = io.read_block()
    assert block == b"body\r\n.\r\nQUIT\r\n"
    io.unread(block[9:])
    assert io.readline(100) == b"QUIT"
    os.write(writer, b"RSET\r\n")
    assert io.discard_buffer() == 0
    assert io.readline(100) == b"RSET"
