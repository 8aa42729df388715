"""logging/warn - write log lines to stderr (the default logger)

Writes every log line at or below a level to stderr, one line per event:

    <pid> (<hook>) <plugin>: <message>

which is the Perl qpsmtpd's format, so existing log readers keep working.
Under tcpserver/daemontools stderr goes to `multilog`, which adds the
time; each connection is its own process, so the pid names the connection
for as long as it lasts (use `logging/connection_id` for an id that stays
unique over time).

## Arguments

    logging/warn [LEVEL]

`LEVEL` is the highest level written, as a number (`0`-`7`) or a name
(`LOGINFO` or `INFO`).  Without it, the level of `config/loglevel` is used
(LOGWARN when that file is missing).  An unknown level is a configuration
error (the plugin does not load, and `qpsmtpd.py --check-config` says so).

List it in `config/logging` (or `config/plugins`):

    logging/warn LOGINFO

## Notes

- Under xinetd stderr is the client's socket; the program notices and this
  plugin then writes nothing (see docs/logging.md).
- Control characters from the client arrive escaped (`\\x0d`), so a line
  never breaks; AUTH credentials are never logged.
"""

import os


def register(self, qp, level=None):
    self.level = qp.trace_level() if level is None else _parse_level(level)
    self.log(LOGINFO, "Initializing logging::warn plugin")


def _parse_level(value):
    level = int(value) if value.isdigit() else log_level(value)
    if not isinstance(level, int) or not 0 <= level <= 7:
        raise ValueError(f"unknown log level {value!r}")
    return level


def hook_logging(self, transaction, trace, hook, plugin, message):
    if plugin is not None and plugin == self.plugin_name:
        return DECLINED
    if trace > self.level or not self.qp.stderr_logging_allowed():
        return DECLINED
    if plugin is not None and hook is not None:
        prefix = f" ({hook}) {plugin}:"
    elif plugin is not None:
        prefix = f" {plugin}:"
    elif hook is not None:
        prefix = f" ({hook}) running plugin:"
    else:
        prefix = ""
    try:
        os.write(2, f"{os.getpid()}{prefix} {message}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass
    return DECLINED
