"""# virus/clamav — scan each message with ClamAV's command-line scanner

At the end of DATA the spooled message is scanned by running `clamdscan`
(recommended: it asks the running clamd, Debian package `clamav-daemon`)
or `clamscan` (Debian package `clamav`; loads the whole signature database
for every message, slow).  A virus gets the message refused (or marked),
a clean message gets an `X-Virus-Checked` field.

    virus/clamav clamscan_path=/usr/bin/clamdscan clamd_conf=/etc/clamav/clamd.conf action=reject
    virus/clamav /usr/bin/clamdscan max_size=1048576 action=add-header

## Arguments

`name=value` words (the old form: a leading path to the scanner):

* `clamscan_path=PATH` — the scanner (default `/usr/bin/clamdscan`).
* `clamd_conf=PATH` — clamd's configuration, given to clamdscan as
  `--config-file` so it finds clamd's socket (default `/etc/clamd.conf`
  when it exists, else Debian's `/etc/clamav/clamd.conf`).  clamscan has no
  such option and does not get it.
* `action=reject|add-header` — `reject` (what qpsmtpd did when no action
  was given): `552 Virus Found: <name>`; `add-header`: the message is
  accepted with `X-Virus-Found: Yes` and `X-Virus-Details: <name>`.
* `max_size=BYTES` — larger messages are not scanned (default 524288).
* `tmp_dir=PATH` — accepted for old configs (the scanner reads the spool
  file; nothing is written elsewhere).
* `back_compat` — adds `-i --max-recursion=50` for ClamAV before 0.80.
* `declined_on_fail` — accept the message unscanned when the scanner fails
  (instead of `451`).
* `timeout=SECONDS` — how long the scanner may run (default 20; always
  ending a second before `config/plugin_timeout`); then it is killed.

The command is

    <clamscan_path> --stdout [-i --max-recursion=50] [--config-file=<clamd_conf>] [--stream] --no-summary <spool file>

`--stream` is given to clamdscan: it reads the spool file itself and
streams it to clamd, so clamd needs no access to qpsmtpd's spool directory
and spool files stay mode 0600 (qpsmtpd instead made them readable to the
spool directory's group).

## Outcomes

| scanner | message |
| --- | --- |
| exit 0 | accepted with `X-Virus-Checked: Checked by ClamAV on <me>` |
| exit 1, `... <name> FOUND` | `552 Virus Found: <name>`, or accepted with `X-Virus-Found`/`X-Virus-Details` (`action=add-header`) |
| another exit code, killed by a signal, not startable, or past `timeout` | `451 Unable to scan for viruses` (nothing queued), or accepted unscanned with `declined_on_fail` |

## The log

    (data_post) virus::clamav: pass, clean (192.0.2.1)
    (data_post) virus::clamav: fail, virus found: Test.EICAR-NDB.UNOFFICIAL (192.0.2.1): 552 Virus Found: Test.EICAR-NDB.UNOFFICIAL
    (data_post) virus::clamav: error, /usr/bin/clamdscan exited with 2: ERROR: Could not connect to clamd ...; deferred (192.0.2.1): 451 Unable to scan for viruses
    (data_post) virus::clamav: Mail too large to scan (812345 vs 524288)
"""

from __future__ import annotations

import os

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN
from qpsmtpd.plugin import Plugin

DEFAULT_SCANNER = "/usr/bin/clamdscan"
CLAMD_CONFS = ("/etc/clamd.conf", "/etc/clamav/clamd.conf")
MAX_OUTPUT = 64 * 1024


class ClamAV(Plugin):
    arguments = Arguments(
        Option("clamscan_path"),
        Option("clamd_conf"),
        Option("action", default="reject", choices=("add-header", "reject")),
        Option("max_size", kind="int", default=512 * 1024, minimum=1),
        Option("tmp_dir"),
        Option("back_compat", kind="flag", default=False),
        Option("declined_on_fail", kind="flag", default=False),
        Option("timeout", kind="float", default=20.0, minimum=0.1),
        positional=(Option("path"),),
    )

    def init(self, qp, *args) -> None:
        opts = self.opts
        leading = opts["path"]
        if leading and not (leading.startswith("/") and os.access(leading, os.X_OK)):
            self.log(LOGWARN, f"ignoring {leading!r}: not an executable path")
            self.argument_warnings.append(f"{leading!r} is not an executable path")
            leading = None
        self.scanner = opts["clamscan_path"] or leading or DEFAULT_SCANNER
        self.clamd_conf = opts["clamd_conf"] or next((path for path in CLAMD_CONFS if os.path.exists(path)),
                                                      CLAMD_CONFS[0])
        if opts["tmp_dir"] and not os.path.isdir(opts["tmp_dir"]):
            self.log(LOGWARN, f"tmp_dir {opts['tmp_dir']} does not exist (it is not used)")

    def command(self, filename: str) -> list[str]:
        argv = [self.scanner, "--stdout"]
        if self.opts["back_compat"]:
            argv += ["-i", "--max-recursion=50"]
        if "clamdscan" in os.path.basename(self.scanner):
            argv += [f"--config-file={self.clamd_conf}", "--stream"]
        return [*argv, "--no-summary", filename]

    def hook_data_post(self, transaction):
        size = transaction.data_size()
        if size > self.opts["max_size"]:
            self.log(LOGWARN, f"Mail too large to scan ({size} vs {self.opts['max_size']})")
            return DECLINED
        from qpsmtpd.daemonio import time_budget

        argv = self.command(transaction.body_filename())
        self.log(LOGDEBUG, "Running: " + " ".join(argv))
        status, output = run_scanner(argv, time_budget(self, self.opts["timeout"]))
        client = self.connection.remote_ip
        if status == 0:
            self.log(LOGINFO, f"pass, clean ({client})")
            transaction.header.add("X-Virus-Checked", f"Checked by ClamAV on {self.qp.config_value('me') or ''}")
            return DECLINED
        names = found_names(output) if status == 1 else []
        if not names:
            return self.failed(describe_failure(self.scanner, status, output))
        found = " ".join(names)
        if self.opts["action"] == "add-header":
            self.log(LOGINFO, f"fail, virus found: {found} ({client}); accepted with X-Virus-Found: Yes")
            transaction.header.add("X-Virus-Found", "Yes")
            transaction.header.add("X-Virus-Details", found)
            return DECLINED
        self.log(LOGINFO, f"fail, virus found: {found} ({client}): 552 Virus Found: {found}")
        return DENY, f"Virus Found: {found}"

    def failed(self, reason: str):
        client = self.connection.remote_ip
        if self.opts["declined_on_fail"]:
            self.log(LOGERROR, f"error, {reason}; accepted unscanned ({client})")
            return DECLINED
        from qpsmtpd.replies import Reply

        self.log(LOGERROR, f"error, {reason}; deferred ({client}): 451 Unable to scan for viruses")
        return Reply(451, "Unable to scan for viruses", esc="4.3.0")


def found_names(output: str) -> list[str]:
    """The signature names of `<file>: <name> FOUND` lines."""
    names = []
    for line in output.splitlines():
        if line.endswith(" FOUND"):
            name = line[:-len(" FOUND")].rsplit(" ", 1)[-1]
            if name and name.isprintable():
                names.append(name)
    return names


def describe_failure(scanner: str, status: int | str, output: str) -> str:
    text = " ".join(output.split())[:200]
    if isinstance(status, str):
        return f"{scanner} {status}"
    if status < 0:
        return f"{scanner} was killed by signal {-status}" + (f": {text}" if text else "")
    return f"{scanner} exited with {status}" + (f": {text}" if text else "")


def run_scanner(argv: list[str], seconds: float) -> tuple[int | str, str]:
    """(exit status or a reason it has none, stdout+stderr); the scanner is killed after `seconds`."""
    import select
    import time

    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"},
                             file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                           (os.POSIX_SPAWN_DUP2, write_end, 1),
                                           (os.POSIX_SPAWN_DUP2, write_end, 2),
                                           (os.POSIX_SPAWN_CLOSE, read_end)])
    except OSError as error:
        os.close(read_end)
        return f"could not be started ({error.strerror})", ""
    finally:
        os.close(write_end)
    output = bytearray()
    deadline = time.monotonic() + seconds
    finished = False
    try:
        poller = select.poll()
        poller.register(read_end, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                finished = True
                break
            if len(output) < MAX_OUTPUT:
                output += chunk[:MAX_OUTPUT - len(output)]
    finally:
        os.close(read_end)
        if not finished:
            _kill(pid)
        _, wait_status = os.waitpid(pid, 0)
    text = output.decode("utf-8", "replace")
    if not finished:
        return f"did not finish within {seconds:g}s (killed)", text
    return os.waitstatus_to_exitcode(wait_status), text


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
