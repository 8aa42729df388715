"""# auth/auth_checkpassword

Authenticates AUTH PLAIN and AUTH LOGIN users with a DJB-style
checkpassword program (vchkpw, checkpassword-pam, ...).

## Configuration

In `config/plugins`:

    auth/auth_checkpassword checkpw /usr/local/vpopmail/bin/vchkpw true /bin/true

or, without arguments, the two paths on one line of
`config/smtpauth-checkpassword`:

    /usr/local/vpopmail/bin/vchkpw /bin/true

Both must be executable, else the plugin logs an error and registers no
hook.

## The protocol

The program is started as `checkpw true` with `user NUL password NUL
timestamp NUL` readable on file descriptor 3.  Exit status 0 means the
password is right (the program then runs `true`); anything else is a
failure.  The program's standard output is discarded (it never reaches
the SMTP client), and it is killed after 30 seconds.

User names or passwords holding a NUL byte are refused without running
the program.

## Results

`OK` (`auth_checkpassword`) on success, `DECLINED` otherwise, so another
auth plugin may still accept the user.

Unlike the Perl plugin, no `sudo` is prepended automatically: make the
program setuid, or name a wrapper script that calls `sudo -C4 ...`.
"""

import os
from qpsmtpd.constants import OK, DECLINED, LOGERROR, LOGNOTICE, LOGINFO
from qpsmtpd.args import Arguments, Option

arguments = Arguments(
    Option("checkpw", help="the checkpassword program"),
    Option("true", help="the program checkpw runs after a good password"),
)

TIMEOUT = 30


def register(self, qp, *args):
    checkpw, true = self.get_checkpw()
    if not checkpw:
        return
    self.checkpw, self.true = checkpw, true
    self.register_hook("auth-plain", "auth_checkpassword")
    self.register_hook("auth-login", "auth_checkpassword")


def get_checkpw(self):
    checkpw, true = self.opts["checkpw"], self.opts["true"]
    if checkpw and true and _executable(checkpw) and _executable(true):
        return checkpw, true
    missing = ("disabled due to invalid configuration. See the documentation of "
               "auth/auth_checkpassword for how to configure.")
    line = self.qp.config_value("smtpauth-checkpassword")
    if not line:
        self.log(LOGERROR, missing)
        return None, None
    self.log(LOGNOTICE, "reading config from smtpauth-checkpassword")
    words = line.split()
    if len(words) != 2 or not all(_executable(word) for word in words):
        self.log(LOGERROR, missing)
        return None, None
    return words[0], words[1]


def _executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def auth_checkpassword(self, transaction, method, user, pass_clear, pass_hash, ticket=None):
    if not user or not pass_clear or "\0" in user or "\0" in pass_clear:
        self.log(LOGINFO, "fail: unusable user name or password")
        return DECLINED
    status = self.run_checkpw(user, pass_clear)
    if status != 0:
        self.log(LOGNOTICE, f"fail, auth failed: {status}")
        return DECLINED
    self.connection.notes["authuser"] = user
    self.log(LOGINFO, f"pass, auth success with {method}")
    return OK, "auth_checkpassword"


def run_checkpw(self, user, password):
    """The program's exit status (-1 when it could not run or took too long)."""
    import subprocess
    import time
    data = b"%s\0%s\0%s\0" % (user.encode("utf-8", "surrogateescape"),
                              password.encode("utf-8", "surrogateescape"),
                              str(int(time.time())).encode())
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)  # far below the pipe buffer: cannot block
        os.close(write_end)
        write_end = -1
        proc = subprocess.Popen([self.checkpw, self.true], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                pass_fds=(3,), preexec_fn=None if read_end == 3 else _dup_to_3(read_end))
    except OSError as error:
        self.log(LOGERROR, f"cannot run {self.checkpw}: {error}")
        return -1
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    try:
        return proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        self.log(LOGERROR, f"{self.checkpw} did not finish within {TIMEOUT}s")
        return -1


def _dup_to_3(fd):
    def child():
        os.dup2(fd, 3)  # the new descriptor is inheritable
    return child
