"""# spamassassin — score each message with SpamAssassin's spamd

At the end of DATA the message goes to `spamd` (Debian package `spamd`;
the rules come with `spamassassin`) with spamd's own protocol (SPAMC/1.5
`HEADERS`), streamed in blocks.  spamd's `X-Spam-*` header fields are put
on top of the message, the subject can be marked, and a message scoring at
or above a threshold can be refused.

    spamassassin reject 12
    spamassassin reject 20 munge_subject_threshold 10 spamd_socket /run/spamd.sock
    spamassassin reject userprefs spamd_user vpopmail leave_old_headers drop

## Arguments

`key value` pairs, all optional:

* `reject N|userprefs` — refuse messages scoring `N` or more (decimals
  allowed).  `userprefs`: the threshold is the `required` score spamd
  reports, i.e. the recipient's own setting (with `spamd_user vpopmail`).
  Without `reject` (or `reject 0`) nothing is refused.  `reject_threshold N`
  is the older spelling, used when `reject` is absent.
* `reject_type perm|temp|disconnect|temp_disconnect` — `perm` (default):
  `552 spam score exceeded threshold`; `temp`: `452` with that text.
* `munge_subject_threshold N` — when the score is above `N` (and above
  spamd's `required` score), the Subject gets a prefix.
* `subject_prefix TEXT` — the prefix (one word; default the first line of
  `config/subject_prefix`, else `*** SPAM ***`).
* `spamd_socket /path/to/socket|host:port` — where spamd listens (default
  `localhost:783`).  A value with a `/` is a unix socket.
* `spamd_user NAME` — the `User:` spamd scores for (default: the user
  qpsmtpd runs as).  `vpopmail` means "the recipient": a message with one
  recipient is scored with that recipient's address as the user, so
  spamd's per-user preferences apply.
* `headers none` — add no header fields (the results still go to the note).
* `leave_old_headers rename|drop|keep` — what happens to `X-Spam-*` fields
  the message already carries (`X-Spam-Status`, `X-Spam-Flag`,
  `X-Spam-Check-By`, `X-Spam-User` and every name spamd returns): `rename`
  (default) to `X-Old-Spam-*`, `drop`, or `keep`.
* `relayclient skip` — accepted for old configs.  Relay clients (`relay`,
  AUTH) and whitelisted hosts and senders are never scanned, as in qpsmtpd.
* `size_limit BYTES` — larger messages are not scanned (default 500000).
* `timeout SECONDS` — the whole exchange with spamd (default 20; always
  ending a second before `config/plugin_timeout`); `connect_timeout
  SECONDS` for connecting (default 5).
* `defer_on_error yes|no` — when spamd cannot give a result (see below):
  `no` (default, as qpsmtpd) accepts the message unscanned; `yes` answers
  `451 Unable to scan for spam` so the sender retries.

## Several recipients

spamd scores a message for one user.  With `spamd_user vpopmail` and one
recipient that recipient is the user.  With several recipients the user
stays `spamd_user` (per-user preferences are not consulted), and the
message gets `X-Spam-User: <user>, <N> recipients` so the delivery agent
can re-check it per recipient.

## What the message gets

spamd's `X-Spam-*` fields as SpamAssassin wrote them (`X-Spam-Status`,
`X-Spam-Flag`, `X-Spam-Level`, `X-Spam-Checker-Version`, and any
`add_header` of your SpamAssassin config), except `X-Spam-Report` and
`X-Spam-Prev-Subject`.  The results are in the transaction note
`spamassassin`, a dict of strings for other plugins: `is_spam` (`Yes` or
`No`), `score`, `required`, `tests`, `autolearn`, `version`.  Spam costs the
connection 1 karma; SpamAssassin's autolearn adds 1 (`ham`) or takes 1
(`spam`).

## When spamd fails

spamd down (connection refused or no socket), not answering within
`timeout`, dying mid-answer, or answering an error or garbage: the log says
`error, <reason>` and, with `defer_on_error no`, the message is accepted
unscanned with no `X-Spam-*` fields; with `defer_on_error yes` the client
gets `451 Unable to scan for spam` and nothing is queued.  Never a hang,
never a half-added header.

## The log

    (data_post) spamassassin: pass, Ham, -0.1 < 12, learn=disabled (192.0.2.1)
    (data_post) spamassassin: karma -1 (-1)
    (data_post) spamassassin: fail, Spam, 1003.3 >= 12, learn=disabled (192.0.2.1): 552 spam score exceeded threshold
    (data_post) spamassassin: fail, tolerated, Spam, 7.2 < 12, learn=disabled (192.0.2.1)
    (data_post) spamassassin: skip, too large (812345)
    (data_post) spamassassin: error, cannot connect to localhost:783: Connection refused; accepted unscanned (192.0.2.1)
"""

from __future__ import annotations

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE
from qpsmtpd.plugin import Plugin

DEFAULT_PREFIX = "*** SPAM ***"
NOT_ADDED = frozenset(("x-spam-prev-subject", "x-spam-report"))
# what another server may have added; never trusted, even when spamd's answer lacks the name
ALWAYS_RETIRED = ("X-Spam-Status", "X-Spam-Flag", "X-Spam-Check-By")
BLOCK_SIZE = 256 * 1024


class SpamAssassin(Plugin):
    arguments = Arguments(
        Option("reject", kind="float", choices=("userprefs",), help="refuse at this score"),
        Option("reject_threshold", kind="float", help="old name of reject"),
        Option("reject_type", default="perm", choices=("perm", "temp", "soft", "hard", "disconnect", "temp_disconnect")),
        Option("munge_subject_threshold", kind="float"),
        Option("subject_prefix"),
        Option("spamd_socket"),
        Option("spamd_user"),
        Option("headers"),
        Option("leave_old_headers", default="rename", choices=("drop", "rename", "keep", "DROP", "RENAME", "KEEP")),
        Option("relayclient", choices=("skip",)),
        Option("size_limit", kind="int", default=500_000, minimum=1),
        Option("timeout", kind="float", default=20.0, minimum=0.1),
        Option("connect_timeout", kind="float", default=5.0, minimum=0.1),
        Option("defer_on_error", kind="bool", default=False),
    )

    def init(self, qp, *args) -> None:
        opts = self.opts
        if opts["reject"] is None and opts["reject_threshold"] is not None:
            opts["reject"] = opts["reject_threshold"]
        opts["leave_old_headers"] = opts["leave_old_headers"].lower()
        from qpsmtpd.daemonio import parse_endpoint  # small; checks spamd_socket once, at load

        try:
            self.endpoint = parse_endpoint(opts["spamd_socket"], "localhost", 783)
        except ValueError as error:
            self.log(LOGERROR, f"spamd_socket: {error}; using localhost:783")
            self.argument_warnings.append(f"spamd_socket: {error}")
            self.endpoint = ("localhost", 783)

    # -- the hook -------------------------------------------------------------
    def hook_data_post(self, transaction):
        if self.is_immune():
            return DECLINED
        size = transaction.data_size()
        if size > self.opts["size_limit"]:
            self.log(LOGINFO, f"skip, too large ({size})")
            return DECLINED
        username = self.spamd_username(transaction)
        from qpsmtpd.daemonio import DaemonError

        try:
            fields = self.ask_spamd(transaction, username)
        except DaemonError as error:
            return self.unscanned(str(error))
        if not fields.get("X-Spam-Status"):
            return self.unscanned("spamd's answer has no X-Spam-Status")
        self.add_headers(transaction, fields, username)
        self.munge_subject(transaction)
        return self.verdict(transaction)

    def unscanned(self, reason: str):
        client = self.connection.remote_ip
        if self.opts["defer_on_error"]:
            from qpsmtpd.replies import Reply

            self.log(LOGERROR, f"error, {reason}; deferred ({client}): 451 Unable to scan for spam")
            return Reply(451, "Unable to scan for spam", esc="4.3.0")
        self.log(LOGERROR, f"error, {reason}; accepted unscanned ({client})")
        return DECLINED

    # -- talking to spamd -----------------------------------------------------
    def spamd_username(self, transaction) -> str:
        username = self.opts["spamd_user"] or _process_user()
        count = len(transaction.recipients)
        if count > 1:
            self.log(LOGDEBUG, f"Message has {count} recipients")
            return username
        if username == "vpopmail" and count == 1:
            return transaction.recipients[0].address  # per-user SpamAssassin preferences
        return username

    def ask_spamd(self, transaction, username: str) -> dict[str, str]:
        """spamd's X-Spam-* fields for the message (DaemonError when there is no answer)."""
        from qpsmtpd import spamc
        from qpsmtpd.daemonio import time_budget

        sender = transaction.sender.format() if transaction.sender else "<>"
        head = b"X-Envelope-From: " + sender.encode("utf-8", "surrogateescape") + b"\n"
        if transaction.header is not None:
            head += transaction.header.as_bytes()
        length = len(head) + transaction.body_length()
        result = spamc.check(self.endpoint, self._blocks(transaction, head), length, username,
                             timeout=time_budget(self, self.opts["timeout"]),
                             connect_timeout=self.opts["connect_timeout"])
        self.log(LOGDEBUG, f"spamd: {result.status}, {result.protocol_headers.get('spam', '')}")
        return result.headers

    @staticmethod
    def _blocks(transaction, head: bytes):
        yield head
        transaction.body_resetpos()
        while True:
            block = transaction.body_read(BLOCK_SIZE)
            if not block:
                return
            yield block

    # -- the message ----------------------------------------------------------
    def add_headers(self, transaction, fields: dict[str, str], username: str) -> None:
        results = parse_spam_status(fields["X-Spam-Status"])
        transaction.notes["spamassassin"] = results
        if self.opts["headers"] == "none":
            return
        header = transaction.header
        count = len(transaction.recipients)
        self.retire_old(header, "X-Spam-User")  # never trust one that came with the message
        added = [(name, value) for name, value in fields.items() if name.lower() not in NOT_ADDED]
        retired = {name.lower(): name for name in ALWAYS_RETIRED}
        retired.update((name.lower(), name) for name, _value in added)
        for name in retired.values():
            self.retire_old(header, name)
        if count > 1:
            header.add("X-Spam-User", f"{username}, {count} recipients", 0)
        for index, (name, value) in enumerate(added):
            header.add(name, value.replace("\r", ""), index)

    def retire_old(self, header, name: str) -> None:
        """leave_old_headers: rename `X-Spam-x` to `X-Old-Spam-x`, drop it, or keep it."""
        action = self.opts["leave_old_headers"]
        if action not in ("rename", "drop"):
            return
        old_values = header.get_all(name)
        if not old_values:
            return
        header.delete(name)
        if action == "rename":
            old_name = "X-Old-" + name[2:] if name[:2].lower() == "x-" else "Old-" + name
            for value in old_values:
                header.add(old_name, value, 0)

    def munge_subject(self, transaction) -> None:
        threshold = self.opts["munge_subject_threshold"]
        if self.opts["headers"] == "none" or not threshold:
            return
        results = transaction.notes.get("spamassassin") or {}
        score = _number(results.get("score"))
        required = _number(results.get("required"))
        if score is None or (required and score <= required) or score <= threshold:
            return
        prefix = self.opts["subject_prefix"] or self.qp.config_value("subject_prefix") or DEFAULT_PREFIX
        subject = transaction.header.get("Subject") or ""
        transaction.header.replace("Subject", f"{prefix} {subject}")

    def verdict(self, transaction):
        results = transaction.notes.get("spamassassin")
        if not results:
            self.log(LOGNOTICE, "error, no results")
            return DECLINED
        score = _number(results.get("score"))
        if score is None:
            self.log(LOGERROR, "error, error getting score")
            return DECLINED
        is_spam = results.get("is_spam") == "Yes"
        status = f"{'Spam' if is_spam else 'Ham'}, {results.get('score')}"
        if is_spam:
            self.adjust_karma(-1)
        learn = ""
        autolearn = results.get("autolearn")
        if autolearn:
            if autolearn == "ham":
                self.adjust_karma(1)
            elif autolearn == "spam":
                self.adjust_karma(-1)
            learn = f", learn={autolearn}"
        client = self.connection.remote_ip
        reject = self.opts["reject"]
        if reject == "userprefs":
            reject = _number(results.get("required"))
        if not reject:
            self.log(LOGINFO, f"{'fail' if is_spam else 'pass'}, reject disabled, {status}{learn} ({client})")
            return DECLINED
        limit = f"{reject:g}"
        if score < reject:
            verdict = "fail, tolerated" if is_spam else "pass"
            self.log(LOGINFO, f"{verdict}, {status} < {limit}{learn} ({client})")
            return DECLINED
        code = self.get_reject_type()
        reply = "spam score exceeded threshold"
        self.log(LOGINFO, f"fail, {status} >= {limit}{learn} ({client}): {_reply_code(code)} {reply}")
        return code, reply


def parse_spam_status(value: str) -> dict[str, str]:
    """`Yes, score=1003.3 required=5.0 tests=GTUBE,... autolearn=no version=4.0.1` as a dict of strings."""
    words = value.split()
    results: dict[str, str] = {}
    if not words:
        return results
    key = None
    for word in words[1:]:
        if "=" not in word and key and results[key].endswith(","):
            results[key] += word  # a list folded onto the next line (tests=A,B,<fold>C)
            continue
        key, _equals, item = word.partition("=")
        results[key] = item
    results["is_spam"] = words[0].rstrip(",")
    if "hits" in results and "score" not in results:  # SpamAssassin before 3.0
        results["score"] = results.pop("hits")
    return results


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _reply_code(code: int) -> int:
    from qpsmtpd.replies import rule_for

    rule = rule_for("data_post", code)
    return rule.code if rule and rule.code else 552


def _process_user() -> str:
    import os
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
