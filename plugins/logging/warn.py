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

from qpsmtpd.logline import line_prefix, parse_level, write_stderr
from qpsmtpd.constants import DECLINED, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("level", help="the highest level written: 0-7, LOGINFO or INFO (checked by the plugin)"),),
)


def register(self, qp, level=None):
    self.level = qp.trace_level() if level is None else parse_level(level)
    self.log(LOGINFO, f"Initializing {self.plugin_name} plugin")


def line_id(self, transaction):
    """What each line starts with: the pid here; logging/connection_id and
    logging/transaction_id inherit this plugin and change only this."""
    return str(os.getpid())


def hook_logging(self, transaction, trace, hook, plugin, message):
    if plugin is not None and plugin == self.plugin_name:
        return DECLINED
    if trace > self.level or not self.qp.stderr_logging_allowed():
        return DECLINED
    write_stderr(f"{self.line_id(transaction)}{line_prefix(hook, plugin)} {message}")
    return DECLINED
