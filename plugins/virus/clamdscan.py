"""# virus/clamdscan — scan each message with ClamAV's clamd

At the end of DATA the message (header and body, as it would be queued)
is streamed to `clamd` (Debian package `clamav-daemon`) with clamd's
`INSTREAM` command, over its unix socket or TCP.  A virus gets the message
refused; a clean message gets `X-Virus-Found: No` and `X-Virus-Checked`.
clamd never needs to read qpsmtpd's spool directory.

    virus/clamdscan
    virus/clamdscan deny_viruses yes max_size 1024
    virus/clamdscan clamd_socket /run/clamav/clamd.ctl defer_on_error yes
    virus/clamdscan clamd_host 10.0.0.5 clamd_port 3310

## Arguments

`key value` pairs, all optional:

* `clamd_socket PATH` — clamd's unix socket (its `LocalSocket`; default
  `/var/run/clamav/clamd.ctl`, Debian's).
* `clamd_port PORT` — use TCP instead (clamd's `TCPSocket`, usually 3310);
  `clamd_host HOST` (default `localhost`) says where.
* `deny_viruses yes|no` — `yes` (default) refuses a message with a virus:
  `552 Virus found: <name>`.  `no` accepts it with `X-Virus-Found: Yes`
  and `X-Virus-Details: <name>`.
* `defer_on_error yes|no` — when clamd cannot give a verdict (see below):
  `no` (default, as qpsmtpd) accepts the message unscanned; `yes` answers
  `451 Unable to scan for viruses` so the sender retries.
* `max_size KB` — larger messages (bytes received after DATA) are not
  scanned (default 1024, i.e. 1 MB).  Keep it below clamd's
  `StreamMaxLength` (clamd refuses longer streams: an error, see below).
* `scan_all yes|no` — `yes` (default) scans every message; `no` only those
  whose `Content-Type` is `multipart/...` with a boundary.
* `timeout SECONDS` — the whole scan (default 20; always ending a second
  before `config/plugin_timeout`); `connect_timeout SECONDS` for
  connecting (default 5).

A connection marked naughty (the `naughty` connection note) is not scanned
when the `naughty` plugin is configured: it refuses that mail anyway.
Without it the message is scanned (a virus found in one message marks the
connection naughty; the next message on it must not slip through
unscanned).  Relay clients are scanned.

## What the message gets

Clean:

    X-Virus-Checked: by ClamAV 1.4.6 on mx.example.com
    X-Virus-Found: No

With a virus and `deny_viruses no`:

    X-Virus-Details: Win.Test.EICAR_HDB-1
    X-Virus-Found: Yes

A virus also marks the connection naughty (notes `naughty`, `Virus found:
<name>`, and `rejected`) and costs it 1 karma.

## When clamd fails

clamd down (no socket, connection refused), not answering within `timeout`,
dying mid-scan, answering an ERROR (for example `INSTREAM size limit
exceeded`) or garbage: the log says `error, <reason>`; with
`defer_on_error no` the message is accepted unscanned (no `X-Virus-*`
fields), with `defer_on_error yes` the client gets
`451 Unable to scan for viruses` and nothing is queued.

## The log

    (data_post) virus::clamdscan: pass, clean (192.0.2.1)
    (data_post) virus::clamdscan: fail, found virus Win.Test.EICAR_HDB-1 (192.0.2.1): 552 Virus found: Win.Test.EICAR_HDB-1
    (data_post) virus::clamdscan: skip, too big (2345678)
    (data_post) virus::clamdscan: skip, not multipart
    (data_post) virus::clamdscan: error, cannot connect to /var/run/clamav/clamd.ctl: No such file or directory; accepted unscanned (192.0.2.1)
"""

from __future__ import annotations

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE
from qpsmtpd.plugin import Plugin

DEFAULT_SOCKET = "/var/run/clamav/clamd.ctl"
BLOCK_SIZE = 256 * 1024


class ClamdScan(Plugin):
    arguments = Arguments(
        Option("clamd_socket", default=DEFAULT_SOCKET),
        Option("clamd_host", default="localhost"),
        Option("clamd_port", kind="int", minimum=1, maximum=65535),
        Option("deny_viruses", kind="bool", default=True),
        Option("defer_on_error", kind="bool", default=False),
        Option("max_size", kind="int", default=1024, minimum=1, help="KB"),
        Option("scan_all", kind="bool", default=True),
        Option("timeout", kind="float", default=20.0, minimum=0.1),
        Option("connect_timeout", kind="float", default=5.0, minimum=0.1),
    )

    def init(self, qp, *args) -> None:
        port = self.opts["clamd_port"]
        self.endpoint = (self.opts["clamd_host"], port) if port else self.opts["clamd_socket"]

    def hook_data_post(self, transaction):
        if self.connection.notes.get("naughty") and self.naughty_will_refuse():
            self.log(LOGINFO, "skip, naughty")
            return DECLINED
        if not self.should_scan(transaction):
            return DECLINED
        from qpsmtpd import clamd
        from qpsmtpd.daemonio import DaemonError, Deadline, time_budget

        seconds = time_budget(self, self.opts["timeout"])
        deadline = Deadline(seconds)
        try:
            version = clamd.version(self.endpoint, seconds, self.opts["connect_timeout"])
            verdict = clamd.instream(self.endpoint, transaction.iter_message(BLOCK_SIZE),
                                     deadline.left(), self.opts["connect_timeout"])
        except DaemonError as error:
            return self.unscanned(str(error))
        client = self.connection.remote_ip
        if verdict.virus is None:
            self.log(LOGINFO, f"pass, clean ({client})")
            me = self.qp.config_value("me") or ""
            transaction.header.add("X-Virus-Found", "No", 0)
            transaction.header.add("X-Virus-Checked", f"by {version.split('/')[0]} on {me}", 0)
            return DECLINED
        return self.found(transaction, verdict.virus)

    def found(self, transaction, virus: str):
        self.mark_naughty(f"Virus found: {virus}")  # what `naughty` answers later messages of this connection
        self.adjust_karma(-1)
        client = self.connection.remote_ip
        if self.opts["deny_viruses"]:
            self.log(LOGNOTICE, f"fail, found virus {virus} ({client}): 552 Virus found: {virus}")
            return DENY, f"Virus found: {virus}"
        self.log(LOGNOTICE, f"fail, found virus {virus} ({client}); accepted with X-Virus-Found: Yes")
        transaction.header.add("X-Virus-Found", "Yes", 0)
        transaction.header.add("X-Virus-Details", virus, 0)
        return DECLINED

    def naughty_will_refuse(self) -> bool:
        """The `naughty` plugin is configured: a naughty connection's mail is refused anyway."""
        return any(plugin.config_name.split(":")[0] == "naughty" for plugin in self.qp.plugins)

    def unscanned(self, reason: str):
        client = self.connection.remote_ip
        if self.opts["defer_on_error"]:
            from qpsmtpd.replies import Reply

            self.log(LOGERROR, f"error, {reason}; deferred ({client}): 451 Unable to scan for viruses")
            return Reply(451, "Unable to scan for viruses", esc="4.3.0")
        self.log(LOGERROR, f"error, {reason}; accepted unscanned ({client})")
        return DECLINED

    def should_scan(self, transaction) -> bool:
        size = transaction.data_size()
        if size > self.opts["max_size"] * 1024:
            self.log(LOGINFO, f"skip, too big ({size})")
            return False
        self.log(LOGDEBUG, f"data_size, {size}")
        if self.opts["scan_all"]:
            return True
        return self.is_multipart(transaction)

    def is_multipart(self, transaction) -> bool:
        content_type = transaction.header.get("Content-Type") if transaction.header is not None else None
        folded = " ".join((content_type or "").split()).lower()
        kind, _semicolon, parameters = folded.partition(";")
        if kind.strip().startswith("multipart/") and "boundary=" in parameters:
            return True
        self.log(LOGNOTICE, "skip, not multipart")
        return False
