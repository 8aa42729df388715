"""Test plugin: `sleepy HOOK SECONDS [MARKER_FILE]` sleeps in HOOK, then accepts (OK).

When the engine's time limit interrupts it, it writes MARKER_FILE in its clean-up
(the PluginTimeout it is told with), to prove a plugin can clean up.
"""

import time

from qpsmtpd.constants import OK
from qpsmtpd.plugin import PluginTimeout


def register(self, qp, hook, seconds, marker=""):
    self.seconds = float(seconds)
    self.marker = marker
    self.register_hook(hook, "answer")


def answer(self, transaction, *args):
    try:
        time.sleep(self.seconds)
    except PluginTimeout:
        if self.marker:
            with open(self.marker, "w") as handle:
                handle.write("cleaned up\n")
        raise
    return OK
