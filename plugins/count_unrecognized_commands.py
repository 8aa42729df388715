"""# count_unrecognized_commands — disconnect clients that send too many unknown commands

Counts the unrecognized commands of the connection (in the connection note
`unrec_cmd_count`).  Below the limit the client gets the usual
`500 Unrecognized command`; the command that reaches the limit is answered

    521 Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?

and the connection is closed.  Good against spam sent through open HTTP
proxies, which send HTTP headers as SMTP commands.

## Arguments

One number: how many unrecognized commands end the connection (default 4).

## Example

    count_unrecognized_commands 4
"""

from qpsmtpd.constants import DENY_DISCONNECT, DECLINED, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    positional=(Option("max", kind="int", default=4, minimum=0,
                       help="unrecognized commands that end the connection"),),
)


def register(self, qp, *args):
    self.max_unrecognized = self.opts["max"] or 4


def hook_unrecognized_command(self, transaction, cmd="", *args):
    count = (self.connection.notes.get("unrec_cmd_count") or 0) + 1
    self.connection.notes["unrec_cmd_count"] = count
    if count < self.max_unrecognized:
        self.log(LOGINFO, f"'{cmd}', ({count})")
        return DECLINED
    self.log(LOGINFO, f"fail, '{cmd}' ({count})")
    return (DENY_DISCONNECT,
            f"Closing connection, {count} unrecognized commands. Perhaps you should read RFC 2821?")
