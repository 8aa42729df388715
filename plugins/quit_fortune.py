"""# quit_fortune — a fortune cookie with the goodbye

When a client that greeted with HELO (not EHLO) sends QUIT, the 221 reply
carries the output of `/usr/games/fortune -s`, each line prefixed with
`  / `:

    221-mx.example.com closing connection.
    221-  / Today is what happened to yesterday.

When `fortune` is not installed the plugin does nothing.

## Arguments

`fortune PATH` — another fortune program (default `/usr/games/fortune`).
"""

from qpsmtpd.constants import DECLINED, DONE, LOGWARN
from qpsmtpd.args import Arguments, Option

arguments = Arguments(Option("fortune", default="/usr/games/fortune", help="the fortune program"))


FORTUNE = "/usr/games/fortune"


def register(self, qp, *args):
    import os

    self.fortune_program = self.opts["fortune"] or FORTUNE
    if os.access(self.fortune_program, os.X_OK):
        self.register_hook("quit", "fortune")


def fortune(self, transaction, *args):
    import subprocess

    if self.connection.hello != "helo":
        return DECLINED
    try:
        output = subprocess.run([self.fortune_program, "-s"], capture_output=True, timeout=10,
                                check=False).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError) as error:
        self.log(LOGWARN, f"fortune failed: {error}")
        return DECLINED
    lines = ["  / " + "".join(ch for ch in line if ch.isprintable()) for line in output.splitlines()]
    self.qp.respond(221, f"{self.qp.config_value('me')} closing connection.", *lines, esc="2.0.0")
    return DONE
