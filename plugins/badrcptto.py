"""# badrcptto — refuse recipients listed in `config/badrcptto`

Like `badmailfrom`, for the envelope recipient.  Each line of
`config/badrcptto` is a pattern, optionally followed by whitespace and the
reply text:

* `user@host` — that recipient (case-insensitive);
* `@host` — every recipient at that host;
* a regular expression (a line containing one of `/ ^ $ * + ! % ? \\`),
  matched case-insensitively against `user@host`:

      nobody@example.com
      @retired.example.com
      ^.*%.*@    No percent hack here
      !          Bang paths are not welcome

A listed recipient is refused at RCPT with `550 <text>`, or with
`550 mail to <entry> not accepted here (#5.1.1)` when the line has no
text; each match costs the connection 2 karma.  Recipients without a
user or host part, relay clients and whitelisted hosts/senders are not
checked.

## Arguments

`loglevel N`.

## Config files

`badrcptto`.
"""


from qpsmtpd import dsn
from qpsmtpd.constants import DENY, DECLINED, LOGERROR, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel

REGEXP_CHARS = frozenset("/^$*+!%?\\")


def hook_rcpt(self, transaction, recipient, params=None):
    if self.is_immune():
        return DECLINED
    if not recipient or not recipient.host or not recipient.user:
        self.log(LOGINFO, "skip: missing host or user")
        return DECLINED
    host = recipient.host.lower()
    to = f"{recipient.user.lower()}@{host}"
    lines = self.qp.config("badrcptto")
    if not lines:
        self.log(LOGINFO, "skip, empty config")
        return DECLINED
    for line in lines:
        parts = line.strip().split(None, 1)
        if not parts:
            continue
        bad = parts[0].lower()
        reason = parts[1].strip() if len(parts) > 1 else ""
        if self.is_match(to, bad, host):
            self.adjust_karma(-2)
            if reason:
                return DENY, reason
            return dsn.no_such_user(f"mail to {bad} not accepted here")
    self.log(LOGINFO, "pass")
    return DECLINED


def is_match(self, to, bad, host):
    if not REGEXP_CHARS.isdisjoint(bad):
        self.log(LOGDEBUG, f"badrcptto pattern ({bad}) match for {to}")
        found = self.search_pattern(bad, to, ignore_case=True)
        if found:
            self.log(LOGINFO, "fail: pattern match")
        return bool(found)
    if "@" not in bad:
        self.log(LOGERROR, f"badrcptto: bad config: no @ sign in {bad}")
        return False
    if bad.startswith("@"):
        if bad == "@" + host:
            self.log(LOGINFO, "fail: host match")
            return True
        return False
    if bad == to:
        self.log(LOGINFO, "fail: rcpt match")
        return True
    return False
