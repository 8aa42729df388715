"""# content_log — keep a copy of every message in a file

Appends each message (header and body, as received) to a log file at the
end of DATA; the message then goes on as usual.  Useful to debug other
plugins or to keep an archive.  Concurrent sessions append under a lock,
so messages never interleave.

## Config files

* `content_log_enabled` — `true`, `1` or `yes` (default) enable it; any
  other value disables the plugin;
* `content_log_file` — path of the log file, passed through `strftime`
  (default `mail/%Y%m%d`, one file per day).  A relative path is relative
  to the installation directory.  The directory must exist.

A subclass (`isa_plugin("content_log")`) may override `exclude(self)` to
leave some messages out.

## Arguments

None.
"""

from qpsmtpd.constants import DECLINED, LOGERROR
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def register(self, qp, *args):
    if self.content_log_enabled():
        self.register_hook("data_post", "data_post_handler")


def content_log_enabled(self):
    import re

    enabled = self.qp.config_value("content_log_enabled")
    if enabled is None:
        return True
    return bool(re.fullmatch(r"(?i)(true|1|yes)\s*", enabled))


def content_log_file(self):
    import os
    import time

    path = time.strftime(self.qp.config_value("content_log_file") or "mail/%Y%m%d", time.localtime())
    return path if os.path.isabs(path) else os.path.join(self.qp.install_dir, path)


def exclude(self):
    return False


def data_post_handler(self, transaction):
    import fcntl

    if self.exclude():
        return DECLINED, "excluded from content logging"
    path = self.content_log_file()
    try:
        with open(path, "ab") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.writelines(transaction.iter_message(65536))
    except OSError as error:
        self.log(LOGERROR, f"Could not write {path}: {error}")
        return DECLINED, "Could not open log file.. continuing anyway"
    return DECLINED, "successfully saved message.. continuing"
