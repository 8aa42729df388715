"""# queue_discard — a benchmark-only queue that keeps nothing and answers 250

Used by bench/forkserver.py --no-spawn to measure the server without a queue
program; never use it on a real server (every message is lost).
"""

from qpsmtpd.constants import OK
from qpsmtpd.plugin import Plugin


class QueueDiscard(Plugin):
    def hook_queue(self, transaction):
        return OK, "Queued (discarded by the benchmark)"
