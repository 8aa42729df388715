"""# ident/p0f — the client's operating system from p0f 3's passive TCP fingerprint

Asks a running p0f (version 3) over its API socket what it learned from
the client's TCP packets, and keeps the answer in the connection note
`p0f` for other plugins (greylist Windows hosts, adjust karma, ...).
Optionally refuses recipients when the client's OS is on a block list, and
adds `X-P0F-*` headers.

Only p0f 3 is supported (Debian's `p0f` package is 3.09b); p0f 2's API is
not.

## Starting p0f

    p0f -u p0f -i eth0 -s /run/p0f/p0f.sock 'dst port 25' -d -o /dev/null

The smtpd user needs write permission on the socket.

## Configuration

In `config/plugins`:

    ident/p0f /run/p0f/p0f.sock [smite_os REGEX] [add_headers true|false] [local_ip IP] [version 3]

* the first word — the API socket of p0f (required).
* `smite_os` — karma -1 when the OS (`genre`) matches this regular
  expression (case-insensitive).
* `add_headers` — `false` turns the headers off (default on).
* `local_ip` — accepted for old configurations; p0f 3 needs only the
  client's address, so it is not used.
* `version` — `3` (the default).  `2` is refused with a log line: the
  plugin then does nothing.

Config file `p0f_blocked_operating_systems`: one OS per line, either the
exact `genre` (`Windows 7 or 8`) or a case-insensitive regular expression
between slashes (`/windows/`).  When it has entries, recipients get
`550 OS Blocked` from clients whose OS matches, except relay clients and
whitelisted hosts (the connection note `p0f_exclude` records that).

## Notes and headers

At connect, the connection note `p0f` is a dict of p0f's answer: `magic`,
`status`, `first_seen`, `last_seen`, `total_conn`, `uptime_min`,
`up_mod_days`, `last_nat`, `last_chg`, `distance`, `bad_sw`, `os_match_q`,
`os_name`, `os_flavor`, `http_name`, `http_flavor`, `link_type`,
`language`, and, when p0f named the OS, `genre` (`os_name os_flavor`),
`link` (`link_type`) and `uptime` (`uptime_min`) as p0f 2 called them.
The log line is `Linux 2.2.x-3.x`; `skip, no match` when p0f has not seen
the client, `skip, ...` when p0f cannot be asked (5 s time-out; the
session goes on).

With headers on, each message gets `X-P0F-Genre` and `X-P0F-Link-Type`
(when known), replacing any the client sent.
"""

from __future__ import annotations

import os

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO
from qpsmtpd.plugin import Plugin

TIMEOUT = 5.0
QUERY_MAGIC = 0x50304601
RESPONSE_MAGIC = 0x50304602
STATUS_BADQUERY = 0x00
STATUS_OK = 0x10
STATUS_NOMATCH = 0x20
RESPONSE_SIZE = 232
# p0f 3's struct p0f_api_response (little-endian on the hosts p0f runs on: native order)
RESPONSE_FORMAT = "=IIIIIIIIIhBB32s32s32s32s32s32s"
FIELDS = ("magic", "status", "first_seen", "last_seen", "total_conn", "uptime_min", "up_mod_days",
          "last_nat", "last_chg", "distance", "bad_sw", "os_match_q", "os_name", "os_flavor",
          "http_name", "http_flavor", "link_type", "language")


class P0f(Plugin):
    arguments = Arguments(
        Option("smite_os", help="regular expression: karma -1 for a matching OS"),
        Option("add_headers", default="true", help="false: no X-P0F-* headers"),
        Option("local_ip", help="p0f 2 only; accepted and not used"),
        Option("version", kind="int", default=3, choices=None, help="p0f version (3 only)"),
        positional=(Option("p0f_socket"),),
    )

    def register(self, qp, *args) -> None:
        if self.opts["version"] != 3:
            self.log(LOGERROR, f"p0f version {self.opts['version']} is not supported, only p0f 3: plugin disabled")
            return
        self.p0f_socket = self.opts["p0f_socket"]
        self.register_hook("connect", "p0f_lookup")
        if "false" not in str(self.opts["add_headers"]).lower():
            self.register_hook("data_post", "add_headers")
        self.register_genre_blocking()

    def check_config(self) -> list[str]:
        """Problems for --check-config."""
        import stat
        if self.opts["version"] != 3:
            return ["only p0f version 3 is supported"]
        if not self.opts["p0f_socket"]:
            return ["the p0f API socket is not given (ident/p0f /path/to/p0f.sock)"]
        try:
            if not stat.S_ISSOCK(os.stat(self.opts["p0f_socket"]).st_mode):
                return [f"{self.opts['p0f_socket']} is not a socket"]
        except OSError as error:
            return [f"p0f API socket {self.opts['p0f_socket']}: {error.strerror} (is p0f running with -s?)"]
        return []

    def register_genre_blocking(self) -> None:
        import re
        self.os_block: list[str] = []
        self.os_block_re: list[re.Pattern[str]] = []
        for line in self.qp.config("p0f_blocked_operating_systems"):
            line = line.strip()
            if len(line) > 2 and line.startswith("/") and line.endswith("/"):
                try:
                    self.os_block_re.append(re.compile(line[1:-1], re.IGNORECASE))
                except re.error as error:
                    self.log(LOGERROR, f"bad regular expression {line} in p0f_blocked_operating_systems: {error}")
            elif line:
                self.os_block.append(line)
        if self.os_block or self.os_block_re:
            self.register_hook("rcpt", "rcpt_handler")

    # -- connect: ask p0f -------------------------------------------------------------
    def p0f_lookup(self, transaction):
        if not self.p0f_socket:
            self.log(LOGERROR, "skip, socket not defined in config.")
            return DECLINED
        query = self.query_for(self.connection.remote_ip)
        if query is None:
            return DECLINED
        try:
            response = self.ask_p0f(query)
        except OSError as error:
            self.log(LOGERROR, f"skip, could not query p0f at {self.p0f_socket}: {error}")
            return DECLINED
        if self.response_ok(response):
            self.store_results(response)
        return DECLINED

    def query_for(self, ip: str) -> bytes | None:
        import socket
        import struct
        for family, kind in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
            try:
                packed = socket.inet_pton(family, ip)
            except OSError:
                continue
            return struct.pack("=IB16s", QUERY_MAGIC, kind, packed)
        self.log(LOGERROR, f"skip, unable to determine remote IP ({ip!r})")
        return None

    def ask_p0f(self, query: bytes) -> bytes:
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(self.p0f_socket)
            sock.sendall(query)
            self.log(LOGDEBUG, f"sent {len(query)} byte request")
            response = b""
            while len(response) < RESPONSE_SIZE:
                chunk = sock.recv(RESPONSE_SIZE - len(response))
                if not chunk:
                    break
                response += chunk
        self.log(LOGDEBUG, f"received {len(response)} byte response")
        return response

    def response_ok(self, response: bytes) -> bool:
        import struct
        if len(response) < 8:
            self.log(LOGERROR, f"skip, short response from p0f ({len(response)} bytes)")
            return False
        magic, status = struct.unpack_from("=II", response)
        if magic != RESPONSE_MAGIC:
            self.log(LOGERROR, "skip, Bad response magic.")
            return False
        if status == STATUS_BADQUERY:
            self.log(LOGERROR, "skip, bad query")
            return False
        if status == STATUS_NOMATCH:
            self.log(LOGINFO, "skip, no match")
            return False
        if status != STATUS_OK or len(response) != RESPONSE_SIZE:
            self.log(LOGERROR, f"skip, unexpected response (status {status}, {len(response)} bytes)")
            return False
        self.log(LOGDEBUG, "pass, query ok")
        return True

    def store_results(self, response: bytes) -> dict:
        import re
        import struct
        values = struct.unpack(RESPONSE_FORMAT, response)
        result: dict = {}
        for name, value in zip(FIELDS, values):
            if isinstance(value, bytes):
                value = _c_string(value)
            result[name] = value
        if result["os_name"]:  # the names p0f 2 used
            result["genre"] = f"{result['os_name']} {result['os_flavor']}"
            if result["link_type"]:
                result["link"] = result["link_type"]
            if result["uptime_min"]:
                result["uptime"] = result["uptime_min"]
        smite_os = self.opts["smite_os"]
        if result.get("genre") and smite_os:
            try:
                if re.search(smite_os, result["genre"], re.IGNORECASE):
                    self.adjust_karma(-1)
            except re.error as error:
                self.log(LOGERROR, f"bad smite_os regular expression: {error}")
        self.connection.notes["p0f"] = result
        self.log(LOGINFO, f"{result['os_name']} {result['os_flavor']}")
        return result

    # -- rcpt: the block list -------------------------------------------------------------
    def rcpt_handler(self, transaction, recipient, *params):
        if not self.check_genre(recipient):
            return DECLINED
        return DENY, "OS Blocked"

    def check_genre(self, recipient) -> bool:
        genre = (self.connection.notes.get("p0f") or {}).get("genre")
        if not genre or self.exclude_connection() or self.exclude_recipient(recipient):
            return False
        if genre in self.os_block:
            self.log(LOGINFO, f"fail, OS {genre} blocked")
            return True
        for pattern in self.os_block_re:
            if pattern.search(genre):
                self.log(LOGINFO, f"fail, OS {genre} blocked by /{pattern.pattern}/")
                return True
        return False

    def exclude_connection(self) -> bool:
        notes = self.connection.notes
        if notes.get("p0f_exclude") is None:
            notes["p0f_exclude"] = 1 if self.is_immune() else 0
        return bool(notes["p0f_exclude"])

    def exclude_recipient(self, recipient) -> bool:
        """Override in a plugin that inherits this one to spare some recipients."""
        return False

    # -- data_post: headers ------------------------------------------------------------
    def add_headers(self, transaction):
        p0f = self.connection.notes.get("p0f")
        if not p0f:
            return DECLINED
        for name, value in (("X-P0F-Genre", p0f.get("genre")), ("X-P0F-Link-Type", p0f.get("link_type"))):
            if value:
                transaction.header.delete(name)
                transaction.header.add(name, value, 0)
        return DECLINED


def _c_string(raw: bytes) -> str:
    """A NUL-terminated field of p0f's answer as printable text."""
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return "".join(char if char.isprintable() else "?" for char in text)
