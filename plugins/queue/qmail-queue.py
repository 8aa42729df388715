"""# queue/qmail-queue

Hands each accepted message to qmail's `qmail-queue` program, the usual way
to queue mail on a qmail host.

## Arguments

    queue/qmail-queue [path]

`path` is the qmail-queue program to run (an absolute path).  Without it
the plugin runs `$QMAIL/bin/qmail-queue` (`QMAIL` defaults to
`/var/qmail`).  The environment variable `QMAILQUEUE`, when set, overrides
both, as it does for qmail itself.  Extra arguments are ignored with a
warning.

## What it does

The program is started once per message with the message on fd 0 and the
envelope on fd 1, exactly as qmail-smtpd drives it:

* fd 0: the header as the engine holds it (with the `Received:` line the
  engine added) followed by the body, with LF line ends, streamed from the
  spool in 64 KiB blocks, then end of file;
* fd 1: `F<sender>\\0`, one `T<recipient>\\0` per recipient, and a final
  `\\0` (the null sender is `F\\0`).

## Config files

* `qmail_queue_timeout` — seconds qmail-queue may take to read the message
  and envelope and exit (default 300); past it, it is killed and the client
  gets `451 qq timeout (#4.3.0)`.  (The engine's `queue_timeout` bounds the
  whole queue hook too.)

## Safety

`250` only when qmail-queue read the whole message, then the whole envelope,
and exited 0.  A qmail-queue that exits 0 with bytes still unread in either
pipe (or before everything was written), is killed, or cannot be waited for
is a failure (451): it cannot have queued what the client sent.  The
session resets inherited signal dispositions at start-up, so an ignored
SIGCHLD (as `swaks --pipe` leaves it) cannot make the wait fail after
qmail-queue accepted.

## Replies

| qmail-queue result | reply |
| --- | --- |
| exit 0 | `250 Queued! <time> qp <pid> <message-id>` (qpsmtpd's text: Unix time, qmail-queue's pid, the Message-Id header or `<>`) |
| exit 11–40 | `554` and qmail-smtpd's text, e.g. `554 envelope address too long for qq (#5.1.3)` |
| any other exit code | `451` and qmail-smtpd's text, e.g. `451 qq write error or disk full (#4.3.0)` |
| killed by a signal | `451 qq crashed (#4.3.0)` |
| exit 0 without reading everything | `451 qq read error (#4.3.0)` |
| no exit within `qmail_queue_timeout` | `451 qq timeout (#4.3.0)` (it is killed) |
| cannot be started | `451 unable to exec qq (#4.3.0)` |

The texts are qmail-smtpd's (see `docs/queue.md` for the whole table).  The
plugin sends the 451/554 reply itself and returns `DONE` (the qpsmtpd way
for a queue plugin to choose its own reply), so the `queue_post` hooks do
not run after a failure.  qpsmtpd answered every failure with `451 Unable
to queue message (<code>)`; a permanent failure now bounces at once.
"""

from __future__ import annotations

import os
import time

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DONE, LOGERROR, LOGNOTICE, LOGWARN, OK
from qpsmtpd.plugin import Plugin

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Iterable

DEFAULT_TIMEOUT = 300
# qmail-smtpd's texts (qmail.c, qmail_close) for qmail-queue's exit codes.
QQ_EXIT = {
    11: "Denvelope address too long for qq (#5.1.3)",
    31: "Dmail server permanently rejected message (#5.3.0)",
    51: "Zqq out of memory (#4.3.0)",
    52: "Zqq timeout (#4.3.0)",
    53: "Zqq write error or disk full (#4.3.0)",
    54: "Zqq read error (#4.3.0)",
    55: "Zqq unable to read configuration (#4.3.0)",
    56: "Zqq trouble making network connection (#4.3.0)",
    61: "Zqq trouble in home directory (#4.3.0)",
    62: "Zqq trouble creating files in queue (#4.3.0)",
    63: "Zqq trouble creating files in queue (#4.3.0)",
    64: "Zqq trouble creating files in queue (#4.3.0)",
    65: "Zqq trouble creating files in queue (#4.3.0)",
    66: "Zqq trouble creating files in queue (#4.3.0)",
    71: "Zmail server temporarily rejected message (#4.3.0)",
    72: "Zconnection to mail server timed out (#4.4.1)",
    73: "Zconnection to mail server rejected (#4.4.1)",
    74: "Zcommunication with mail server failed (#4.4.2)",
    81: "Zqq internal bug (#4.3.0)",
    91: "Zqq internal bug (#4.3.0)",
    115: "Denvelope address too long for qq (#5.1.3)",
    120: "Zunable to exec qq (#4.3.0)",
}
QQ_CRASHED = "Zqq crashed (#4.3.0)"
QQ_EXEC = "Zunable to exec qq (#4.3.0)"
QQ_WRITE = "Zqq write error or disk full (#4.3.0)"
QQ_UNREAD = "Zqq read error (#4.3.0)"
QQ_TIMEOUT = "Zqq timeout (#4.3.0)"
FIONREAD = 0x541B  # <asm-generic/ioctls.h>: bytes waiting in a pipe (either end on Linux)


def qq_reason(status: int) -> str:
    """qmail-smtpd's verdict for a wait status from subprocess: 'D...'/'Z...', '' for success."""
    if status < 0:
        return QQ_CRASHED
    if status == 0:
        return ""
    if status in QQ_EXIT:
        return QQ_EXIT[status]
    if 11 <= status <= 40:
        return "Dqq permanent problem (#5.3.0)"
    return "Zqq temporary problem (#4.3.0)"


def message_id(transaction: Any) -> str:
    """The Message-Id header for the 250 text, in angle brackets, on one line."""
    value = transaction.header.get("Message-Id") if transaction.header is not None else None
    value = (value or "").split("\n")[0].split("\r")[0].strip()
    return value if value.startswith("<") and value.endswith(">") else f"<{value}>"


def envelope(transaction: Any) -> bytes:
    sender = transaction.sender.address if transaction.sender else ""
    parts = [b"F", sender.encode("utf-8", "surrogateescape"), b"\0"]
    for rcpt in transaction.recipients:
        parts += [b"T", rcpt.address.encode("utf-8", "surrogateescape"), b"\0"]
    parts.append(b"\0")
    return b"".join(parts)


class QueueFailed(Exception):
    """The hand-off failed; `verdict` is qmail-smtpd's text ('Z...' or 'D...')."""

    def __init__(self, verdict: str, detail: str) -> None:
        super().__init__(detail)
        self.verdict = verdict


def unread_bytes(fd: int) -> int:
    """Bytes still waiting in the pipe `fd` belongs to."""
    import fcntl
    import struct

    return struct.unpack("i", fcntl.ioctl(fd, FIONREAD, b"\0\0\0\0"))[0]


def widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Ask for a 1 MiB pipe buffer (Linux; fewer wake-ups per message); the default is fine too."""
    import fcntl

    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        pass


class Pipes:
    """The two pipes to qmail-queue; each end closed exactly once."""

    NAMES = ("msg_read", "msg_write", "env_read", "env_write")

    def __init__(self) -> None:
        self.msg_read, self.msg_write = os.pipe()
        self.env_read, self.env_write = os.pipe()

    def close(self, name: str) -> None:
        fd = getattr(self, name)
        if fd >= 0:
            setattr(self, name, -1)
            os.close(fd)

    def close_all(self) -> None:
        for name in self.NAMES:
            self.close(name)


class Child:
    """qmail-queue running: its pid, a pidfd to wait on with a time limit, and the deadline."""

    def __init__(self, pid: int, deadline: float) -> None:
        self.pid = pid
        self.deadline = deadline
        self.status: int | None = None
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None  # an old kernel: poll waitpid instead

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise QueueFailed(QQ_TIMEOUT, "qmail-queue took too long")
        return left

    def exited(self) -> bool:
        """Reap it if it has exited (never blocks)."""
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError as error:  # reaped by someone else: its verdict is lost
                raise QueueFailed(QQ_CRASHED, f"cannot wait for qmail-queue: {error}") from error
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def write(self, fd: int, blocks: Iterable[bytes]) -> None:
        """Write every block to the non-blocking pipe `fd`; fail when the child exits first."""
        poller = self._poller(fd)
        for block in blocks:
            view = memoryview(block)
            while view:
                try:
                    view = view[os.write(fd, view):]
                    continue
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError) as error:
                    raise QueueFailed(QQ_WRITE, "qmail-queue stopped reading") from error
                self._wait_writable(poller)

    def send_file(self, fd: int, source: int, offset: int, length: int) -> None:
        """`length` bytes of file `source` from `offset` into the pipe, copied by the kernel."""
        poller = self._poller(fd)
        while length > 0:
            try:
                sent = os.sendfile(fd, source, offset, min(length, 1 << 30))
            except BlockingIOError:
                self._wait_writable(poller)
                continue
            except (BrokenPipeError, ConnectionResetError) as error:
                raise QueueFailed(QQ_WRITE, "qmail-queue stopped reading") from error
            if sent == 0:  # the spool file is shorter than the transaction says: never queue half
                raise QueueFailed(QQ_WRITE, "spool file ended early")
            offset += sent
            length -= sent

    def _poller(self, fd: int) -> Any:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if self.pidfd is not None:
            poller.register(self.pidfd, select.POLLIN)
        return poller

    def _wait_writable(self, poller: Any) -> None:
        poller.poll(min(self.remaining(), 0.2 if self.pidfd is None else 3600) * 1000)
        if self.exited():  # it cannot have queued what it never read; its own verdict wins
            assert self.status is not None
            raise QueueFailed(qq_reason(self.status) or QQ_UNREAD,
                              f"qmail-queue exited ({self.status}) before reading everything")

    def wait(self) -> int:
        """The exit code (negative: the signal), within the deadline."""
        import select

        while not self.exited():
            if self.pidfd is not None:
                select.select([self.pidfd], [], [], self.remaining())
            else:
                time.sleep(min(self.remaining(), 0.01))
        assert self.status is not None
        return self.status

    def close(self) -> None:
        """Kill and reap it if it still runs (a failure or a time-out on our side)."""
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.status = -9
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class QmailQueue(Plugin):
    """Runs qmail-queue for every message."""

    arguments = Arguments(positional=(Option("path", help="the qmail-queue program (absolute path)"),), free=True)

    def register(self, qp: Any, *args: str) -> None:
        if len(args) > 1:
            self.log(LOGWARN, "Ignoring additional arguments.")
        path = self.opts["path"] or os.environ.get("QMAIL", "/var/qmail") + "/bin/qmail-queue"
        self.queue_exec = os.environ.get("QMAILQUEUE") or path

    def reply(self, verdict: str) -> int:
        """Answer a failure ourselves: 'D...' -> 554, anything else -> 451."""
        code = 554 if verdict.startswith("D") else 451
        self.log(LOGERROR, f"qmail-queue failed: {code} {verdict[1:]}")
        self.qp.respond(code, verdict[1:])
        return DONE

    def hook_queue(self, transaction: Any) -> Any:
        program = self.queue_exec
        if not os.path.isabs(program):
            self.log(LOGERROR, f"qmail-queue path is not absolute: {program}")
            return self.reply(QQ_EXEC)
        timeout = self.qp.config_int("qmail_queue_timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT
        pipes = Pipes()
        child = None
        try:
            self.log(LOGNOTICE, f"Queuing to {program}")
            try:
                pid = os.posix_spawn(program, [program], os.environ, file_actions=[
                    (os.POSIX_SPAWN_DUP2, pipes.msg_read, 0), (os.POSIX_SPAWN_DUP2, pipes.env_read, 1)])
            except OSError as error:
                self.log(LOGERROR, f"could not run {program}: {error}")
                return self.reply(QQ_EXEC)
            child = Child(pid, time.monotonic() + timeout)
            status = self.hand_over(child, transaction, pipes)
            # our copies of the read ends stay open until here: bytes left in a pipe mean
            # qmail-queue exited without reading everything, whatever its exit code says
            left = unread_bytes(pipes.msg_read) + unread_bytes(pipes.env_read)
        except QueueFailed as failure:
            self.log(LOGERROR, str(failure))
            return self.reply(failure.verdict)
        finally:
            pipes.close_all()
            if child is not None:
                child.close()
        verdict = qq_reason(status)
        if not verdict and left:
            self.log(LOGERROR, f"qmail-queue exited 0 with {left} bytes unread")
            verdict = QQ_UNREAD
        if verdict:
            return self.reply(verdict)
        return OK, f"Queued! {int(time.time())} qp {pid} {message_id(transaction)}"

    @staticmethod
    def hand_over(child: Child, transaction: Any, pipes: Pipes) -> int:
        """Message on fd 0 to its end, then the envelope on fd 1; the exit code."""
        os.set_blocking(pipes.msg_write, False)
        os.set_blocking(pipes.env_write, False)
        widen_pipe(pipes.msg_write)
        region = transaction.body_region()
        if region is None:  # the body is still in memory
            child.write(pipes.msg_write, transaction.iter_message())
        else:  # the header as we rewrote it, then the spooled body straight from the file
            header = transaction.header.as_bytes() if transaction.header is not None else b""
            child.write(pipes.msg_write, [header])
            child.send_file(pipes.msg_write, *region)
        pipes.close("msg_write")  # end of file for the message: qmail-queue now reads the envelope
        child.write(pipes.env_write, [envelope(transaction)])
        pipes.close("env_write")
        return child.wait()
