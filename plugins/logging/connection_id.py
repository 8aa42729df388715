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

import os


def register(self, qp, level=None):
    self.level = qp.trace_level() if level is None else _parse_level(level)
    self.log(LOGINFO, "Initializing logging::connection_id plugin")


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
    line = f"{self.qp.connection.id}{_prefix(hook, plugin)} {message}\n"
    try:
        os.write(2, line.encode("utf-8", "backslashreplace"))
    except OSError:
        pass
    return DECLINED


def _prefix(hook, plugin):
    if plugin is not None and hook is not None:
        return f" ({hook}) {plugin}:"
    if plugin is not None:
        return f" {plugin}:"
    if hook is not None:
        return f" ({hook}) running plugin:"
    return ""
