"""# auth/auth_flat_file

Authenticates SMTP AUTH users (PLAIN, LOGIN and CRAM-MD5) against a flat
file of clear-text passwords.

## Configuration

In `config/plugins`:

    auth/auth_flat_file

In `config/flat_auth_pw`, one `user@domain:password` per line:

    alice@example.com:s3cret
    bob@example.com:an0ther

User names must be full addresses (with `@domain`); they are compared
literally and without regard to case (the Perl plugin used the name as a
regular expression).  Passwords are compared in constant time.  As the
passwords are kept in clear, CRAM-MD5 works: the password never crosses
the wire.

## Results

* unknown user, or a name without `@domain`: `DECLINED` (the next auth
  plugin may try; if none succeeds the client gets 535);
* wrong password: `DENY` with `auth_flat_file - wrong password`;
* right password: `OK`.
"""

from qpsmtpd.constants import DENY, DECLINED, LOGINFO
from qpsmtpd.args import Arguments

arguments = Arguments()  # none besides the common loglevel


def register(self, qp, *args):
    for hook in ("auth-plain", "auth-login", "auth-cram-md5"):
        self.register_hook(hook, "auth_flat_file")


def auth_flat_file(self, transaction, method, user, pass_clear, pass_hash, ticket=None):
    if pass_clear is None and pass_hash is None:
        self.log(LOGINFO, "fail: missing password")
        return DENY, "authflat - missing password"
    wanted = user.lower()
    if "@" not in wanted:
        self.log(LOGINFO, "fail: missing domain")
        return DECLINED
    stored = None
    for line in self.qp.config("flat_auth_pw"):
        name, sep, password = line.partition(":")
        if sep and name.lower() == wanted:
            stored = password
            break
    if stored is None:
        self.log(LOGINFO, "fail: no such user")
        return DECLINED
    from qpsmtpd.auth import validate_password
    return validate_password(self, src_clear=stored, attempt_clear=pass_clear, attempt_hash=pass_hash,
                             method=method, ticket=ticket, deny=DENY)
