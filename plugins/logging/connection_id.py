"""logging/connection_id - stderr log lines tagged with the connection id

Like `logging/warn`, but each line starts with the connection id instead of
the bare pid:

    <connection id> (<hook>) <plugin>: <message>

The connection id is `<connect time>.<pid>` (`1732150000.4711`): the Unix
time the process started serving the connection and its pid.  It carries
the pid, and unlike the pid alone it stays unique after the pid is reused,
so lines of one connection can be found in months of logs with one grep.
Plugins can read it as `self.connection.id`.

## Arguments

    logging/connection_id [LEVEL]

`LEVEL` is the highest level written (`0`-`7`, `LOGINFO` or `INFO`);
without it the level of `config/loglevel` (default LOGWARN).  An unknown
level stops the plugin from loading.

## Notes

Writes nothing when stderr is the client's socket (xinetd without a
redirection); see docs/logging.md.
"""

from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("level", help="the highest level written: 0-7, LOGINFO or INFO (checked by the plugin)"),),
)


def init(self, qp, *args):
    self.isa_plugin("logging/warn")


def line_id(self, transaction):
    return self.qp.connection.id
