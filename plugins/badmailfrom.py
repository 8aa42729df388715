"""# badmailfrom — refuse envelope senders listed in `config/badmailfrom`

Reads `config/badmailfrom` like qmail-smtpd does.  Each line is a pattern,
optionally followed by whitespace and the reason to give the client:

* `user@host` — that exact sender (case-insensitive);
* `@host` — every sender at that host;
* a regular expression (any line containing one of `/ ^ $ * + ! % ? \\`),
  matched against the lower-cased `user@host` — anchor it yourself:

      ^streamsendbouncer@.*\\.mailengine1\\.com$   Your right-hand side VERP doesn't fool me
      spammer@bad.example
      @spam.example.net                          No mail from that domain

The check runs at MAIL.  A listed sender is refused with the line's reason,
or `Your envelope sender is in my badmailfrom list`; the null sender `<>`,
relay clients and whitelisted hosts are never checked.  Each match costs
the connection 1 karma.

## Arguments

* `reject 1` (default) — refuse at MAIL: `550 <reason>`;
* `reject 0` — only log;
* `reject naughty` — remember the rejection for the `naughty` plugin, which
  refuses later with `(badmailfrom) <reason>`; the rejection belongs to this
  message only (a following MAIL starts clean);
* `reject_type perm|temp|disconnect|temp_disconnect`, `loglevel N`.

## Config files

`badmailfrom`.

## Example

    badmailfrom reject naughty
    naughty reject data
"""

from qpsmtpd.address import ascii_domain
from qpsmtpd.constants import DECLINED, LOGWARN, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments
from qpsmtpd.policy_args import reject_option, reject_type_option

arguments = Arguments(reject_option(default=1), reject_type_option())


DEFAULT_REASON = "Your envelope sender is in my badmailfrom list"
REGEXP_CHARS = frozenset("/^$*+!%?\\")


def hook_mail(self, transaction, sender, params=None):
    if self.is_immune():
        return DECLINED
    lines = self.qp.config("badmailfrom")
    if not self.sender_is_checkable(sender, lines):
        return DECLINED
    host = ascii_domain(sender.host)  # IDNA: listed and sent domains compare as A-labels
    sender_text = f"{sender.user.lower()}@{host}"
    for line in lines:
        parts = line.strip().split(None, 1)
        if not parts or not self.is_match(sender_text, parts[0], host):
            continue
        reason = parts[1].strip() if len(parts) > 1 else DEFAULT_REASON
        self.adjust_karma(-1)
        return self.get_reject(reason, f"{sender_text} in badmailfrom")
    self.log(LOGINFO, "pass")
    return DECLINED


def is_match(self, sender_text, bad, host):
    if not REGEXP_CHARS.isdisjoint(bad):
        found = self.search_pattern(bad, sender_text)
        if found:
            self.log(LOGDEBUG, f"badmailfrom pattern ({bad}) match for {sender_text}")
        return bool(found)
    bad = bad.lower()
    if not bad.isascii() and "@" in bad:
        local, _at, domain = bad.rpartition("@")
        bad = f"{local}@{ascii_domain(domain)}"
    if "@" not in bad:
        self.log(LOGWARN, f"badmailfrom: bad config: no @ sign in {bad}")
        return False
    if bad.startswith("@"):
        return bad == "@" + host
    return bad == sender_text
