"""# rcpt_map — valid recipients of one domain from a map file

For recipients of the domain given with `domain`, looks the address up in
the map file given with `file` and answers with the line's return code and
text; addresses not in the map get the `default` answer
(`550 No such user.` unless configured).  Recipients of other domains are
left to the other plugins.  Matching is case-insensitive.

## Map file

One address per line, a return code (`OK`, `DENY`, `DENYSOFT`, `DECLINED`
...) and an optional text for the client (default `No such user.`):

    # map_example_org
    me@example.org           OK
    you@example.org          OK
    info@example.org         DENY     User not found.

## Arguments

* `domain NAME` (required) — the domain this map is for;
* `file PATH` (required) — the map file; a relative path is looked up like
  a config file (`config/PATH`);
* `default CODE[=TEXT]` — the answer for addresses not in the map; `_` in
  TEXT stands for a space (default `DENY=No_such_user.`).

The plugin fails to load without `domain` or `file`, or with an empty map.
Use one instance per domain (`rcpt_map:1 ...`).

## Example

    rcpt_map domain example.org file map_example_org default DENYSOFT=Try_again_later
"""

import os
from qpsmtpd.constants import DENY, DECLINED, LOGERROR, LOGDEBUG, return_code
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("domain", help="the domain this map is for (required)"),
    Option("file", help="the map file (required)"),
    Option("default", help="CODE[=TEXT]: the answer for addresses not in the map"),
)


def register(self, qp, *args):
    default = self.opts["default"]
    self.default_answer = (DENY, "No such user.")
    if default:
        code_name, _sep, text = default.partition("=")
        code = return_code(code_name)
        if not isinstance(code, int):
            raise ValueError("Not a valid constant for 'default' arg")
        self.default_answer = (code, (text or "No such user.").replace("_", " "))
    if not self.opts["file"]:
        raise ValueError("No map file given...")
    if not self.opts["domain"]:
        raise ValueError("No domain name given...")
    self.domain = self.opts["domain"].lower()
    self.map_file = self.map_path(self.opts["file"])
    self.log(LOGDEBUG, f"Using map {self.map_file} for domain {self.domain}")
    self.recipient_map = self.read_map()
    if not self.recipient_map:
        raise ValueError(f"Empty map file {self.map_file}")


def map_path(self, path):
    return path if os.path.isabs(path) else self.qp.conf.path(path)


def read_map(self):
    mapping = {}
    with open(self.map_file, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 2:
                self.log(LOGERROR, f"No constant in line {number} in {self.map_file}")
                continue
            code = return_code(parts[1])
            if not isinstance(code, int):
                self.log(LOGERROR, f"Not a valid constant in line {number} in {self.map_file}")
                continue
            mapping[parts[0].lower()] = (code, parts[2].strip() if len(parts) > 2 else "No such user.")
    return mapping


def hook_rcpt(self, transaction, recipient, params=None):
    if not recipient.host or not recipient.user:
        return DECLINED
    if recipient.host.lower() != self.domain:
        return DECLINED
    address = f"{recipient.user.lower()}@{recipient.host.lower()}"
    return self.recipient_map.get(address, self.default_answer)
