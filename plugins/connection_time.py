"""# connection_time — log how long each connection lasted

Logs one line at the end of each connection, at level INFO:

    (post-connection) connection_time: 1.234 s.

Timing starts when the plugin's `connect` hook runs (there is no
pre-connection hook in the one-process-per-connection model; the
process start is at most a few milliseconds earlier).

## Arguments

`loglevel N` (`connection_time loglevel +1` logs at a less verbose level);
a single word is the log level itself, as in older qpsmtpd
(`connection_time LOGNOTICE` or `connection_time 5`).
"""

from qpsmtpd.constants import DECLINED, LOGERROR, LOGINFO, LOGDEBUG, log_level
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("level", help="the older form of loglevel: a level number or name"),),
)


def register(self, qp, *args):
    level = self.opts["level"]
    if level is not None and len(args) == 1:
        if not level.isdigit():
            level = log_level(level)
        self.opts["loglevel"] = str(level or 6)
    elif len(args) % 2:
        self.log(LOGERROR, "invalid arguments")
    self.connection_start = None
    self.register_hook("pre-connection", "connect_handler")
    self.register_hook("connect", "connect_handler")


def connect_handler(self, transaction, *args):
    import time

    if self.hook_name == "connect" and self.connection_start is not None:
        return DECLINED
    self.connection_start = time.monotonic()
    self.log(LOGDEBUG, f"started at {time.time():.3f}")
    return DECLINED


def hook_post_connection(self, transaction):
    import time

    if self.connection_start is None:
        self.log(LOGERROR, "Start time not set?!")
        return DECLINED
    self.log(LOGINFO, f"{time.monotonic() - self.connection_start:.3f} s.")
    return DECLINED
