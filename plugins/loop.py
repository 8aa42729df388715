"""# loop — refuse mail that has gone round too often

Counts the `Received` and `Delivered-To` header lines of a message (ours
included) as qmail-smtpd does; at or beyond the limit the message is
refused at the end of DATA with

    552 Too many hops (#5.4.6)

## Arguments

One number: the maximum number of hops (default 100, as qmail-smtpd).

## Example

    loop 50
"""

from qpsmtpd.constants import DECLINED, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("max_hops", kind="int", default=100, minimum=0, help="the most Received lines"),),
)


def init(self, qp, *args):
    self.max_hops = self.opts["max_hops"] or 100


def hook_data_post(self, transaction):
    from qpsmtpd import dsn

    header = transaction.header
    hops = header.count("Received") + header.count("Delivered-To") if header is not None else 0
    if hops >= self.max_hops:
        self.log(LOGINFO, f"fail, {hops} hops")
        return dsn.too_many_hops()
    return DECLINED
