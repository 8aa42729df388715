"""# dont_require_anglebrackets — accept addresses without `<>`

RFC 5321 wants the address in `MAIL FROM:` and `RCPT TO:` inside angle
brackets.  Some clients send `MAIL FROM:user@example.com`; with this
plugin such an address is taken as if it had been `<user@example.com>`.
Each address that needed brackets costs the connection 2 karma.

## Arguments

`loglevel N`.

## Config files

None.
"""

from qpsmtpd.constants import OK, LOGINFO
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_mail_pre(self, transaction, address, params=None):
    return OK, self.add_brackets(address, "MAIL")


def hook_rcpt_pre(self, transaction, address, params=None):
    return OK, self.add_brackets(address, "RCPT")


def add_brackets(self, address, command):
    address = address or ""
    if address.startswith("<") and address.endswith(">"):
        return address
    self.adjust_karma(-2)
    self.log(LOGINFO, f"fail, added {command} angle brackets")
    return f"<{address}>"
