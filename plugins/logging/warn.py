"""logging/warn - write log lines to stderr (multilog-friendly).

Arguments: `logging/warn [LEVEL]` - the highest level written, as a number
(0-7) or a name (`LOGINFO`); default LOGWARN.

Each line is `<pid> (<hook>) <plugin>: <message>`.  List it in
`config/logging` (or `config/plugins`).  Under xinetd, where stderr is the
client's socket, nothing is written (see docs/logging.md).
"""

import os


def register(self, qp, level=None):
    self.level = LOGWARN
    if level is not None:
        self.level = int(level) if level.isdigit() else (log_level(level) if log_level(level) is not None else LOGWARN)
    self.log(LOGINFO, "Initializing logging::warn plugin")


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
