"""logging/syslog - send log lines to syslog

Sends each log line at or below a level to the local syslog daemon (the
`/dev/log` datagram socket, as syslog(3) does) or to a syslog server over
UDP.  One datagram per event, in the classic BSD format:

    <PRI>Nov 21 10:04:05 qpsmtpd[4711]: 1732150000.4711 (rcpt) check_earlytalker: ...

The pid is in the tag (`ident[pid]`), and the message starts with the
connection id (`<connect time>.<pid>`, see `logging/connection_id`).
qpsmtpd's levels map one to one onto syslog priorities (LOGDEBUG is
`debug` ... LOGEMERG is `emerg`).

## Arguments

    logging/syslog [loglevel L] [priority P] [ident STR] [facility F] [logsock T] [socket PATH] [host H] [port N]

- `loglevel L` - the highest level sent (`0`-`7`, `LOGINFO`, `INFO`).
  Default: the level of `config/loglevel` (LOGWARN without that file).
- `priority P` - send every line with this priority instead of the mapped
  one (`LOG_NOTICE`, `notice` or `0`-`7`).
- `ident STR` - the tag; default `qpsmtpd`.
- `facility F` - `LOG_MAIL` (default), `mail`, `daemon`, `local0`-`local7`, ...
- `logsock T` - the transport, `unix` (default) or `udp`; a comma list
  (`unix,udp`) tries each in order until one can be opened.
- `socket PATH` - the unix datagram socket; default `/dev/log`.
- `host H`, `port N` - the syslog server for `udp`; default
  `127.0.0.1` port 514.  UDP messages carry the host name after the time.

Example:

    logging/syslog loglevel LOGINFO facility local3 ident smtpd

## Notes

- The socket is opened at the first line and kept for the connection.  When
  syslog is down, lines are dropped; the session goes on.
- A line longer than 8 KB is cut.
- Bad arguments (odd number of words, unknown facility, priority, level or
  transport) stop the plugin from loading.
"""

import os

from qpsmtpd.logline import line_prefix, parse_level
import time
from qpsmtpd.constants import DECLINED
from qpsmtpd.args import Arguments, Option

arguments = Arguments(  # values are checked by the plugin: a bad one refuses loading
    Option("loglevel", help="the highest level sent"),
    Option("priority", help="send every line with this priority"),
    Option("ident", default="qpsmtpd", help="the tag"),
    Option("facility", default="LOG_MAIL", help="LOG_MAIL, mail, daemon, local0-local7, ..."),
    Option("logsock", default="unix", help="unix or udp, or a comma list tried in order"),
    Option("socket", default="/dev/log", help="the unix datagram socket"),
    Option("host", default="127.0.0.1", help="the syslog server for udp"),
    Option("port", default="514", help="its port"),
)

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
PRIORITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "warn": 4,
              "notice": 5, "info": 6, "debug": 7}
TRANSPORTS = ("unix", "udp")
MAX_DATAGRAM = 8192


def register(self, qp, *args):
    if len(args) % 2:
        raise ValueError("logging/syslog: arguments must be `name value` pairs")
    options = {args[i].lower(): args[i + 1] for i in range(0, len(args), 2)}
    unknown = set(options) - {"loglevel", "priority", "ident", "facility", "logsock", "socket", "host", "port"}
    if unknown:
        raise ValueError(f"logging/syslog: unknown option(s) {', '.join(sorted(unknown))}")
    self.level = parse_level(options["loglevel"]) if "loglevel" in options else qp.trace_level()
    self.priority = _parse_priority(options["priority"]) if "priority" in options else None
    self.ident = options.get("ident", "qpsmtpd")
    if not self.ident.replace("-", "").replace(".", "").replace("_", "").isalnum():
        raise ValueError(f"logging/syslog: bad ident {self.ident!r}")
    self.facility = _parse_facility(options.get("facility", "LOG_MAIL"))
    self.transports = [word.strip().lower() for word in options.get("logsock", "unix").split(",")]
    for transport in self.transports:
        if transport not in TRANSPORTS:
            raise ValueError(f"logging/syslog: unsupported logsock {transport!r} (use unix or udp)")
    self.socket_path = options.get("socket", "/dev/log")
    port = options.get("port", "514")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"logging/syslog: bad port {port!r}")
    self.address = (options.get("host", "127.0.0.1"), int(port))
    self.sock = None
    self.transport = None
    self.hostname = os.uname().nodename


def _parse_priority(value):
    if value.isdigit() and int(value) <= 7:
        return int(value)
    name = value.lower().removeprefix("log_")
    if name not in PRIORITIES:
        raise ValueError(f"logging/syslog: unknown priority {value!r}")
    return PRIORITIES[name]


def _parse_facility(value):
    name = value.lower().removeprefix("log_")
    if name not in FACILITIES:
        raise ValueError(f"logging/syslog: unknown facility {value!r}")
    return FACILITIES[name]


def _connect(self):
    import socket

    for transport in self.transports:
        try:
            if transport == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.connect(self.socket_path)
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.connect(self.address)
        except OSError:
            continue
        self.sock, self.transport = sock, transport
        return True
    return False


def datagram(self, trace, hook, plugin, message):
    """One syslog packet (bytes) for a log line."""
    severity = self.priority if self.priority is not None else trace
    now = time.localtime()
    stamp = time.strftime("%b ", now) + f"{now.tm_mday:2d}" + time.strftime(" %H:%M:%S", now)
    host = f" {self.hostname}" if self.transport == "udp" else ""
    text = (f"<{self.facility * 8 + severity}>{stamp}{host} {self.ident}[{os.getpid()}]: "
            f"{self.qp.connection.id}{line_prefix(hook, plugin)} {message}")
    return text.encode("utf-8", "backslashreplace")[:MAX_DATAGRAM]


def hook_logging(self, transaction, trace, hook, plugin, message):
    if trace > self.level or (plugin is not None and plugin == self.plugin_name):
        return DECLINED
    if self.sock is None and not self._connect():
        return DECLINED
    try:
        self.sock.send(self.datagram(trace, hook, plugin, message))
    except OSError:
        self.sock.close()
        self.sock = None
    return DECLINED
