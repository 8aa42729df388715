"""# auth/auth_vpopmaild

Authenticates AUTH PLAIN and AUTH LOGIN users against a vpopmaild daemon
(its line protocol: `+OK` greeting, `login <user> <password>`, `+OK` or
`-ERR`).

## Configuration

In `config/plugins`:

    auth/auth_vpopmaild [host <host>] [port <port>]

Defaults: `localhost`, port 89.  The plugin waits at most 10 seconds for
the daemon.

## Results

`OK` (`auth_vpopmaild`) when vpopmaild answers `+OK` to the login, else
`DECLINED` (wrong password, daemon unreachable, a bad greeting, or a user
name or password with white space or control characters, which the line
protocol cannot carry).  CRAM-MD5 is not supported (vpopmaild needs the
clear password).
"""

import re
from qpsmtpd.constants import OK, DECLINED, LOGERROR, LOGNOTICE, LOGINFO, LOGDEBUG
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("host", default="localhost", help="the vpopmaild host"),
    Option("port", kind="int", default=89, minimum=1, maximum=65535),
)

TIMEOUT = 10.0
_SAFE = re.compile(r"[^\s\x00-\x1f\x7f]+")


def register(self, qp, *args):
    self.vpopmaild_host = self.opts["host"] or "localhost"
    self.vpopmaild_port = self.opts["port"]
    self.register_hook("auth-plain", "auth_vpopmaild")
    self.register_hook("auth-login", "auth_vpopmaild")


def auth_vpopmaild(self, transaction, method, user, pass_clear, pass_hash, ticket=None):
    if not pass_clear:
        self.log(LOGINFO, "skip: vpopmaild does not support cram-md5")
        return DECLINED
    if not _SAFE.fullmatch(user) or not _SAFE.fullmatch(pass_clear):
        self.log(LOGINFO, "skip: user name or password unusable in the vpopmaild protocol")
        return DECLINED
    self.log(LOGDEBUG, f"attempting {method}")
    try:
        response = self.vpopmaild_login(user, pass_clear)
    except OSError as error:
        self.log(LOGERROR, f"skip, vpopmaild at {self.vpopmaild_host}:{self.vpopmaild_port}: {error}")
        return DECLINED
    if response.startswith("+OK"):
        self.log(LOGINFO, "pass, clear")
        return OK, "auth_vpopmaild"
    self.log(LOGNOTICE, f"fail, {response}")
    return DECLINED


def vpopmaild_login(self, user, password):
    """The daemon's answer to the login line; OSError when it cannot be asked."""
    import socket
    with socket.create_connection((self.vpopmaild_host, self.vpopmaild_port), timeout=TIMEOUT) as sock:
        reader = sock.makefile("rb")
        greeting = _line(reader)
        if not greeting.startswith("+OK"):
            raise OSError(f"bad connection response: {greeting}")
        sock.sendall(f"login {user} {password}\r\n".encode("utf-8", "surrogateescape"))
        return _line(reader)


def _line(reader):
    raw = reader.readline(8192)
    if not raw:
        raise OSError("no response from vpopmaild")
    text = raw.decode("ascii", "replace").rstrip("\r\n")
    return re.sub(r"[^ -~]", "?", text)
