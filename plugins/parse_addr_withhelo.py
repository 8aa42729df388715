"""# parse_addr_withhelo — no ESMTP parameters after HELO

RFC 821 allows nothing after the address in `MAIL FROM:<...>` and
`RCPT TO:<...>`; parameters (`SIZE=`, `BODY=` ...) are an ESMTP extension.
With this plugin, a client that greeted with HELO (not EHLO) gets

    501 No parameters allowed in MAIL
    501 No parameters allowed in RCPT

when it sends parameters anyway.  After EHLO the usual ESMTP parsing is
used.  Addresses without angle brackets are passed on unchanged (load
`dont_require_anglebrackets` to accept them); `MAIL FROM:` with nothing
is the null sender, a bare `postmaster` or `abuse` is a recipient.  Other
malformed lines get `501 Syntax error in command`, `501 Could not parse
your MAIL FROM command` or `501 Could not parse your RCPT TO command`.

## Arguments

None.
"""

import re
from qpsmtpd.constants import OK, DENY, DECLINED, LOGDEBUG
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_mail_parse(self, transaction, line=None):
    if self.connection.hello == "helo":
        return OK, self.parse_without_params
    return DECLINED


def hook_rcpt_parse(self, transaction, line=None):
    if self.connection.hello == "helo":
        return OK, self.parse_without_params
    return DECLINED


def parse_without_params(self, cmd, line):
    self.log(LOGDEBUG, f"_parse() cmd=[{cmd}], line=[{line}]")
    keyword = "from:" if cmd == "mail" else "to:"
    match = re.match(rf"(?i){keyword}\s*", line)
    if not match:
        return DENY, "Syntax error in command"
    line = line[match.end():]
    bracketed = re.match(r"(<.*>)\s*", line)
    if bracketed:
        if re.match(r"\S", line[bracketed.end():]):
            return DENY, f"No parameters allowed in {cmd.upper()}"
        return OK, bracketed.group(1)
    line = line.rstrip()
    if "@" in line:
        if re.search(r"@\S+\s+\S", line):
            return DENY, f"No parameters allowed in {cmd.upper()}"
        return OK, line
    if cmd == "mail":
        if not line:
            return OK, "<>"
        return DENY, "Could not parse your MAIL FROM command"
    if re.fullmatch(r"(?i)postmaster|abuse", line):
        return OK, line
    return DENY, "Could not parse your RCPT TO command"
