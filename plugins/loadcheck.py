"""# loadcheck — refuse connections while the system is busy

At connect time, compares the 1-minute load average with `max_load`; when
it is higher the client gets

    450 Server load too high, please try again later.

and is disconnected.  The load comes from `os.getloadavg()` (the kernel:
`/proc/loadavg` on Linux), else from the output of `uptime`.  A measured
value is reused for `cache_time` seconds.  When no load can be measured
the plugin logs an error and stays inactive.

## Arguments

* `max_load N` — highest acceptable load (default 7);
* `cache_time N` — seconds a measurement is reused (default 10);
* `uptime PATH` — the `uptime` program (default `/usr/bin/uptime`).

## Example

    loadcheck max_load 12 cache_time 30
"""

from qpsmtpd.constants import DENYSOFT, DECLINED, LOGERROR, LOGDEBUG
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("max_load", kind="float", default=7.0, help="highest acceptable load"),
    Option("cache_time", kind="float", default=10.0, minimum=0, help="seconds a measurement is reused"),
    Option("uptime", default="/usr/bin/uptime", help="the uptime program"),
)


def register(self, qp, *args):
    self.load = -1.0
    self.load_time = 0.0
    self.load_method = self.get_load_method()
    if self.load_method is not None:
        self.register_hook("connect", "loadcheck")


def number(self, name, default):
    return self.opts[name] or default


def loadcheck(self, transaction):
    import time

    if time.time() > self.load_time + self.number("cache_time", 10):
        self.load_method()
        self.load_time = time.time()
    if self.load > self.number("max_load", 7):
        self.log(LOGERROR, f"local load too high: {self.load}")
        return DENYSOFT, "Server load too high, please try again later."
    return DECLINED, f"continuing with load: {self.load}"


def get_load_method(self):
    import os

    try:
        os.getloadavg()
        return self.load_from_kernel
    except (AttributeError, OSError):
        pass
    if os.access(self.opts["uptime"], os.X_OK):
        return self.load_from_uptime
    self.log(LOGERROR, "unable to acquire system load")
    return None


def load_from_kernel(self):
    import os

    self.load = os.getloadavg()[0]
    self.log(LOGDEBUG, f"getloadavg reported: {self.load}")


def load_from_uptime(self):
    import re
    import subprocess

    try:
        output = subprocess.run([self.opts["uptime"]], capture_output=True, timeout=10,
                                check=False).stdout.decode("ascii", "replace")
    except (OSError, subprocess.SubprocessError) as error:
        self.log(LOGERROR, f"{self.opts['uptime']} failed: {error}")
        return
    match = re.search(r"aver\S+: (\d+[.,]\d+)", output)
    if match:
        self.load = float(match.group(1).replace(",", "."))
        self.log(LOGDEBUG, f"{self.opts['uptime']} reported: {self.load}")
