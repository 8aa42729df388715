"""# auth/authdeny

A demonstration auth plugin: it registers the generic `auth` hook (so
PLAIN, LOGIN and CRAM-MD5 are advertised) and fails every attempt with
`DECLINED`, so the client gets

    535 5.7.8 PLAIN authentication failed for <user> from <ip> - <user> is not free to abuse my relay

unless another auth plugin accepted the user first.  Not for production.
"""

from qpsmtpd.constants import DECLINED, LOGWARN
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def hook_auth(self, transaction, method, user, pass_clear, pass_hash, ticket=None):
    self.log(LOGWARN, "fail: cannot authenticate")
    return DECLINED, f"{user} is not free to abuse my relay"
