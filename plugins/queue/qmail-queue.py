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

## Replies

| qmail-queue result | reply |
| --- | --- |
| exit 0 | `250 Queued! <time> qp <pid> <message-id>` (qpsmtpd's text: Unix time, qmail-queue's pid, the Message-Id header or `<>`) |
| exit 11–40 | `554` and qmail-smtpd's text, e.g. `554 envelope address too long for qq (#5.1.3)` |
| any other exit code | `451` and qmail-smtpd's text, e.g. `451 qq write error or disk full (#4.3.0)` |
| killed by a signal | `451 qq crashed (#4.3.0)` |
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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

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


def _write_all(fd: int, blocks: Any) -> bool:
    """Write every block to fd and close it; False when the reader went away."""
    try:
        with open(fd, "wb", closefd=True) as pipe:
            for block in blocks:
                pipe.write(block)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


class QmailQueue(Plugin):
    """Runs qmail-queue for every message."""

    def register(self, qp: Any, *args: str) -> None:
        if len(args) > 1:
            self.log(LOGWARN, "Ignoring additional arguments.")
        path = args[0] if args else os.environ.get("QMAIL", "/var/qmail") + "/bin/qmail-queue"
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
        msg_read, msg_write = os.pipe()
        env_read, env_write = os.pipe()
        try:
            self.log(LOGNOTICE, f"Queuing to {program}")
            pid = os.posix_spawn(program, [program], os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, msg_read, 0), (os.POSIX_SPAWN_DUP2, env_read, 1)])
        except OSError as error:
            for fd in (msg_write, env_write):
                os.close(fd)
            self.log(LOGERROR, f"could not run {program}: {error}")
            return self.reply(QQ_EXEC)
        finally:
            os.close(msg_read)
            os.close(env_read)
        written = _write_all(msg_write, transaction.iter_message())
        if written:
            written = _write_all(env_write, [envelope(transaction)])
        else:
            os.close(env_write)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        verdict = qq_reason(status)
        if not verdict and not written:
            verdict = QQ_WRITE  # it exited 0 without reading everything: not safe
        if verdict:
            return self.reply(verdict)
        return OK, f"Queued! {int(time.time())} qp {pid} {message_id(transaction)}"
