"""logging/transaction_id - stderr log lines tagged with the transaction id

Like `logging/warn`, but each line starts with an id naming the message it
belongs to:

    <connection id>.<n> (<hook>) <plugin>: <message>

`<connection id>` is `<connect time>.<pid>` (see `logging/connection_id`)
and `n` numbers the mail transactions of the connection from 1, in the
order their MAIL FROM was accepted.  Lines that belong to no message yet
(the greeting, HELO, a rejected MAIL) carry the connection id alone; so
does the reply to the final dot, which is sent after the transaction has
ended (as in qpsmtpd).  The
id of the current message is also kept in the transaction note
`transaction_id`.

## Arguments

    logging/transaction_id [LEVEL]

`LEVEL` is the highest level written (`0`-`7`, `LOGINFO` or `INFO`);
without it the level of `config/loglevel` (default LOGWARN).  An unknown
level stops the plugin from loading.

## Notes

Writes nothing when stderr is the client's socket (xinetd without a
redirection); see docs/logging.md.
"""

from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("level", help="the highest level written: 0-7, LOGINFO or INFO (checked by the plugin)"),),
)


def init(self, qp, *args):
    self.isa_plugin("logging/warn")
    self.count = 0


def line_id(self, transaction):
    return self.transaction_id(transaction)


def transaction_id(self, transaction):
    """`<connection id>.<n>` once the transaction has a sender, else the connection id."""
    if transaction is None or transaction.sender is None:
        return self.qp.connection.id
    known = transaction.notes.get("transaction_id")
    if known is None:
        self.count += 1
        known = transaction.notes["transaction_id"] = f"{self.qp.connection.id}.{self.count}"
    return known
