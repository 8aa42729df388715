"""logging/devnull - throw every log line away

With this plugin listed in `config/logging`, nothing is logged at all: it
accepts each line and writes it nowhere, so the built-in stderr logger stays
silent too.  Useful for load tests and for super-servers where there is no
place for logs.

## Arguments

None.

    logging/devnull
"""

from qpsmtpd.constants import DECLINED
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_logging(self, transaction, trace, hook, plugin, message):
    return DECLINED
