"""# rcpt_regexp — decide about recipients with a list of patterns

Each line of `config/rcpt_regexp` holds a pattern, a return code and an
optional text for the client:

    # rcpt_regexp
    me@myhost.org           OK       Accepting mail
    /^user\\d+@doma\\.in$/    OK       Accepting mail
    info@myhost.com         DENY     User not found.
    /^unused@.*/            DENY     User not found.
    /^.*$/                  DECLINED Fall through to next rcpt plugin

A pattern between slashes is a regular expression (matched
case-insensitively); anything else must equal the recipient address
(case-insensitive).  The first matching line decides: `OK` accepts the
recipient, `DENY` refuses it (`550 <text>`), `DENYSOFT` defers it
(`450 <text>`), `DECLINED` leaves it to the next plugins.  Invalid
patterns and unknown codes are logged and skipped.

## Config files

`rcpt_regexp` — writable by trusted users only.

## Arguments

None.
"""

import re
from qpsmtpd.constants import DECLINED, LOGWARN, LOGDEBUG, return_code
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_rcpt(self, transaction, recipient, params=None):
    if not recipient.host or not recipient.user:
        return DECLINED
    address = f"{recipient.user}@{recipient.host}".lower()
    for line in self.qp.config("rcpt_regexp"):
        parts = line.split(None, 2)
        if not parts:
            continue
        matcher = self.compile_pattern(parts[0])
        if matcher is False:
            continue
        if len(parts) < 2:
            self.log(LOGWARN, "rcpt_regexp - no return code")
            continue
        code = return_code(parts[1])
        if not isinstance(code, int):
            self.log(LOGWARN, f"rcpt_regexp - '{parts[1]}' is not a valid constant, ignoring this line")
            continue
        if matcher is None:
            if parts[0].lower() != address:
                continue
            self.log(LOGDEBUG, f"String {parts[0].lower()} matched {address}, returning {parts[1]}")
        else:
            if not matcher.search(address):
                continue
            self.log(LOGDEBUG, f"RE {parts[0]} matched {address}, returning {parts[1]}")
        text = parts[2] if len(parts) > 2 else None
        return (code, text) if text else code
    return DECLINED


def compile_pattern(self, text):
    """A compiled regexp for `/.../`, None for a plain address, False when invalid."""
    match = re.fullmatch(r"/(.*)/", text)
    if not match:
        return None
    try:
        return re.compile(match.group(1), re.IGNORECASE)
    except re.error as error:
        self.log(LOGWARN, f"REGEXP '{match.group(1)}' not valid: {error}")
        return False
