"""# queue/exim-bsmtp — queue each message into Exim as batched SMTP (`exim -bS`)

Writes the message and its envelope as one batched-SMTP (BSMTP) job to a
private spool file and feeds it to Exim's BSMTP receiver:

    HELO <this host's name>
    MAIL FROM:<sender>
    RCPT TO:<recipient>        (one per recipient)
    DATA
    <header and body, LF line ends, lines starting with "." doubled>
    .
    QUIT

## Configuration

In `config/plugins`:

    queue/exim-bsmtp [exim_path /usr/sbin/exim4] [timeout 25]

* `exim_path` — the program, started with `-bS` added (default
  `/usr/sbin/rsmtp`, Exim's own name for `exim -bS`).  When it is not
  executable the plugin logs an error at start-up and declines to queue.
* `timeout` — seconds Exim may take (default 25, below the engine's
  `plugin_timeout`); past it Exim is killed and the client gets a 452.

The smtpd user must be in Exim's `trusted_users`, or Exim replaces the
envelope sender with the smtpd user.

## Safety and replies

The client gets `250 Queued!` only when Exim exited 0 without printing an
SMTP error: Exim prints nothing in BSMTP mode unless something went wrong,
and abandons the whole batch at the first error, so a message is queued
for all its recipients or not at all.

| Exim's result | reply |
| --- | --- |
| exit 0, no error line | `250 Queued!` |
| an error line `4xx text` | `452 text` (temporary) |
| an error line `5xx text` | `552 text` |
| non-zero exit or killed, no error line | `DECLINED` (`Internal error enqueuing mail` in the log; another queue plugin may take the message, else `451`) |
| not executable, cannot be started | `DECLINED` likewise |
| no exit within `timeout` | `452 Internal error enqueuing mail` (Exim is killed) |

Everything Exim prints is logged at LOGERROR (`exim: ...`).  The spool file
(0600, in the spool dir) is removed when the transaction ends.
"""

from __future__ import annotations

import os

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO, OK
from qpsmtpd.plugin import Plugin

DEFAULT_EXIM = "/usr/sbin/rsmtp"
DEFAULT_TIMEOUT = 25.0
BLOCK_SIZE = 65536
INTERNAL_ERROR = "Internal error enqueuing mail"


class EximBsmtp(Plugin):
    arguments = Arguments(
        Option("exim_path", default=DEFAULT_EXIM, help="Exim's BSMTP receiver (run with -bS)"),
        Option("timeout", kind="float", default=DEFAULT_TIMEOUT, minimum=1, help="seconds Exim may take"),
    )

    def register(self, qp, *args) -> None:
        self.exim_path = self.opts["exim_path"] or DEFAULT_EXIM
        if not _executable(self.exim_path):
            self.log(LOGERROR, f"Could not find exim at {self.exim_path}; please set exim_path in config/plugins")

    def hook_queue(self, transaction):
        if transaction.header is None:
            self.log(LOGERROR, "No header parsed for transaction; can't enqueue")
            return DENY, "Mail unqueuable"
        if not _executable(self.exim_path):
            self.log(LOGERROR, f"Could not execute {self.exim_path}: not an executable file")
            return DECLINED, INTERNAL_ERROR
        try:
            job = self.write_job(transaction)
        except OSError as error:
            self.log(LOGERROR, f"Couldn't create the BSMTP spool file: {error}")
            return DECLINED, INTERNAL_ERROR
        return self.run_exim(job)

    def write_job(self, transaction) -> str:
        """The BSMTP job in a new 0600 spool file; its path."""
        import socket
        path = self.temp_file()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as job:
            sender = transaction.sender.address if transaction.sender else ""
            lines = [f"HELO {socket.gethostname()}", f"MAIL FROM:<{sender or ''}>"]
            lines += [f"RCPT TO:<{recipient.address or ''}>" for recipient in transaction.recipients]
            lines.append("DATA")
            job.write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
            ends_with_newline = True
            for block in transaction.iter_message(BLOCK_SIZE):
                if not block:
                    continue
                stuffed = block.replace(b"\n.", b"\n..")
                if ends_with_newline and stuffed.startswith(b"."):
                    stuffed = b"." + stuffed
                job.write(stuffed)
                ends_with_newline = block.endswith(b"\n")
            job.write((b"" if ends_with_newline else b"\n") + b".\nQUIT\n")
        return path

    def run_exim(self, job: str):
        import subprocess
        command = [self.exim_path, "-bS"]
        self.log(LOGDEBUG, f"executing cmd {' '.join(command)} < {job}")
        try:
            with open(job, "rb") as stdin:
                done = subprocess.run(command, check=False, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      timeout=self.opts["timeout"] or DEFAULT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.log(LOGERROR, f"BSMTP enqueue failed; {self.exim_path} -bS did not finish in time (killed)")
            return DENYSOFT, INTERNAL_ERROR
        except OSError as error:
            self.log(LOGERROR, f"Could not execute {self.exim_path}: {error}")
            return DECLINED, INTERNAL_ERROR
        code, text = self.error_reply(done.stdout)
        if code:
            self.log(LOGERROR, f"BSMTP enqueue failed; response {code} ({text})")
            return (DENYSOFT if code < 500 else DENY), text
        if done.returncode != 0:
            self.log(LOGERROR, f"BSMTP enqueue failed; exitcode {done.returncode} from {self.exim_path} -bS")
            return DECLINED, INTERNAL_ERROR
        self.log(LOGINFO, "Enqueued to exim via BSMTP")
        return OK, "Queued!"

    def error_reply(self, output: bytes) -> tuple[int, str]:
        """Log Exim's output; the first SMTP error reply in it (code 400-599), or (0, "")."""
        import re
        found = (0, "")
        for raw in output.decode("utf-8", "replace").splitlines():
            line = raw.strip()
            if not line:
                continue
            self.log(LOGERROR, f"exim: {line}")
            match = re.match(r"([45]\d\d)[ -](\S.*)", line)
            if match and not found[0]:
                found = (int(match.group(1)), match.group(2))
        return found


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)
