"""# user_config — per-recipient config files

Answers per-user config lookups (`recipient.config("name")`, used by
plugins that support per-recipient settings, e.g. `whitelist per_recipient 1`)
from a directory per user, laid out like the global `config/` directory:
the lines of `<dir>/<name>`, comments and blank lines kept out.  When the
user has no such file the global config is used.

## Arguments

One optional pattern for the directory, in which `%u` is replaced by the
user part of the address, `%h` by the domain and `%a` by the whole address
(default `/home/%u/.qpsmtpd`).  Addresses whose user or domain contains
`/`, starts with `.` or holds control characters are not looked up.

## Example

    user_config /var/qpsmtpd/users/%h/%u
"""

import re
from qpsmtpd.constants import OK, DECLINED, LOGNOTICE, LOGDEBUG
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("pattern", default="/home/%u/.qpsmtpd", help="the directory of a user (%u, %h, %a)"),),
)

UNSAFE_PART = re.compile(r"/|^\.|[\x00-\x1f\x7f]")


def init(self, qp, *args):
    self.pattern = self.opts["pattern"]


def hook_user_config(self, transaction, address, name):
    import os

    user, host = address.user or "", address.host or ""
    if not self.pattern or UNSAFE_PART.search(user) or UNSAFE_PART.search(host) or "/" in name:
        self.log(LOGDEBUG, "skip, unsafe or empty address")
        return DECLINED
    path = self.pattern.replace("%u", user).replace("%h", host).replace("%a", address.address)
    filename = os.path.join(path, name)
    if not os.path.isfile(filename):
        return DECLINED
    try:
        with open(filename, encoding="utf-8", errors="surrogateescape") as handle:
            lines = [line.strip() for line in handle.read().splitlines()]
    except OSError as error:
        self.log(LOGNOTICE, f"Couldn't open {filename}:{error}")
        return DECLINED
    return OK, [line for line in lines if line and not line.startswith("#")]
