"""# queue/maildir

Delivers each accepted message into a maildir: the simplest way to see what
the server received, and the default of the shipped `config/plugins`.

## Arguments

    queue/maildir path [subdir-template] [mode]

* `path` — the maildir (or the directory holding the per-recipient
  maildirs).  A relative path is taken relative to the installation
  directory (where `qpsmtpd.py` is), not to the working directory, so
  `queue/maildir Maildir` always means `<install>/Maildir`.
* `subdir-template` — deliver one copy **per recipient** into
  `path/<template>`, where `%l` is the recipient's local part, `%d` its
  domain and `%u` the whole address.  Before the substitution, every
  character of the address outside `-A-Za-z0-9+_.,@=` becomes `_` (as
  spamd's `--virtual-config-dir`), and a part that is only dots becomes
  underscores, so no recipient can climb out of `path`.
  The template must contain one of `%l`, `%d`, `%u`.
* `mode` — three octal digits for new directories (default `700`); files
  get the same bits without execute (`770` → directories 0770, files 0660).

The `cur`, `new` and `tmp` directories are created when missing.

## What it writes

Each file starts with `Return-Path: <sender>` and `Delivered-To:` lines,
then the message (header and body, LF line ends).  Without a template there
is one file for all recipients with one `Delivered-To:` per recipient (last
recipient first, as qpsmtpd writes them); with a template each copy has the
`Delivered-To:` of its recipient.

A file is written in `tmp/`, flushed to disk with `fsync`, then renamed
into `new/` (and `new/` is synced).  With several recipients every copy is
written and synced first, and only then are they all renamed; when a
rename or the sync of `new/` fails (or the queue time-out strikes), the
copies already renamed are removed again, so a failure delivers nothing
rather than some copies (which the client's retry would duplicate).
File names are `<time>.P<pid>M<microseconds>Q<counter>.<hostname>`.

## Replies

* `250 Queued! <message-id>` when every copy is in `new/`;
* `451 queue error (<step>)` when a directory cannot be created or a file
  opened, written, renamed or synced (`mkdir`, `open`, `write`, `rename`,
  `sync`; the reason is logged), and then nothing is delivered.
"""

from __future__ import annotations

import os
import re
import time

from qpsmtpd.args import Arguments, Option
from qpsmtpd.constants import DONE, LOGCRIT, LOGERROR, OK
from qpsmtpd.plugin import Plugin

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

BLOCK_SIZE = 65536
_UNSAFE_CHARS = re.compile(r"[^-A-Za-z0-9+_.,@=]")


class DeliveryError(Exception):
    """A step of the delivery failed; `step` goes into the reply."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(detail)
        self.step = step


def hostname() -> str:
    import socket

    match = re.match(r"[\w.-]+", socket.gethostname())
    return match.group(0) if match else "localhost"


def safe_part(text: str) -> str:
    """One path component: unsafe characters and a bare `.`/`..` (or nothing) become `_`."""
    text = _UNSAFE_CHARS.sub("_", text)
    return text if text.strip(".") else text.replace(".", "_") or "_"


def expand(template: str, user: str, host: str) -> str:
    user = safe_part(user)
    host = safe_part(host)
    rcpt = f"{user}@{host}"
    return template.replace("%l", user).replace("%d", host).replace("%u", rcpt)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Maildir(Plugin):
    """Writes the message into a maildir."""

    arguments = Arguments(
        positional=(Option("path", help="the maildir, relative to the installation directory"),
                    Option("subdir_template", help="per-recipient maildir below path: %l, %d, %u"),
                    Option("mode", help="three octal digits for new directories (default 700)")),
    )
    counter = 0

    def register(self, qp: Any, *args: str) -> None:
        path, template, mode = self.opts["path"], self.opts["subdir_template"], self.opts["mode"]
        if not path:
            raise ValueError("maildir directory not specified")
        match = re.match(r"[-/\w.]+", path)
        if not match or match.group(0) != path:
            raise ValueError(f"bad maildir path {path!r}")
        self.maildir = os.path.join(qp.install_dir, path)
        self.template = None
        if template is not None:
            if not re.search(r"%[ldu]", template) or "/../" in f"/{template}/":
                raise ValueError("sub directory does not contain a substitution parameter")
            self.template = template
        self.perms = 0o700
        if mode is not None:
            if not re.fullmatch(r"[0-7]{3}", mode):
                raise ValueError("mode is not an octal number")
            self.perms = int(mode, 8)
        self.host = hostname()

    def hook_queue(self, transaction: Any) -> Any:
        sender = transaction.sender.format() if transaction.sender else "<>"
        if self.template:
            copies = [(os.path.join(self.maildir, expand(self.template, rcpt.user or "", rcpt.host or "")),
                       [rcpt.address]) for rcpt in transaction.recipients]
        else:
            copies = [(self.maildir, [rcpt.address for rcpt in reversed(transaction.recipients)])]
        written: list[tuple[str, str]] = []  # (tmp path, new path) of every copy written
        renamed: list[str] = []               # new paths already in new/
        old_umask = os.umask(0o777 ^ self.perms)
        try:
            for maildir, delivered_to in copies:
                written.append(self.write_copy(transaction, maildir, sender, delivered_to))
            for tmp_path, new_path in written:
                try:
                    os.rename(tmp_path, new_path)
                except OSError as error:
                    raise DeliveryError("rename", f"{new_path}: {error}") from error
                renamed.append(new_path)
            for new_dir in sorted({os.path.dirname(new) for _tmp, new in written}):
                try:
                    fsync_dir(new_dir)
                except OSError as error:
                    raise DeliveryError("sync", f"{new_dir}: {error}") from error
        except DeliveryError as error:
            return self.failed(written, renamed, error.step, str(error))
        except BaseException:  # a time-out or a bug: nothing may stay delivered behind a failure
            self.roll_back(written, renamed)
            raise
        finally:
            os.umask(old_umask)
        msg_id = (transaction.header.get("Message-Id") or "").split("\n")[0].strip()
        return OK, f"Queued! {msg_id}".rstrip()

    def roll_back(self, written: list[tuple[str, str]], renamed: list[str]) -> None:
        """All or nothing: remove every copy, in tmp/ and already in new/."""
        for path in [tmp for tmp, _new in written] + renamed:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as error:
                self.log(LOGCRIT, f"cannot take back {path} after a failed delivery: {error}")

    def failed(self, written: list[tuple[str, str]], renamed: list[str], step: str, detail: str) -> int:
        self.roll_back(written, renamed)
        self.log(LOGERROR, f"maildir delivery failed ({step}): {detail}")
        self.qp.respond(451, f"queue error ({step})")
        return DONE

    def make_dirs(self, maildir: str) -> None:
        for sub in ("cur", "new", "tmp"):
            path = os.path.join(maildir, sub)
            if not os.path.isdir(path):
                try:
                    os.makedirs(path, self.perms, exist_ok=True)
                except OSError as error:
                    raise DeliveryError("mkdir", f"{path}: {error}") from error

    def unique_name(self) -> str:
        now = time.time()
        Maildir.counter += 1
        micro = int((now % 1) * 1_000_000)
        return f"{int(now)}.P{os.getpid()}M{micro}Q{Maildir.counter}.{self.host}"

    def write_copy(self, transaction: Any, maildir: str, sender: str, delivered_to: list[str]) -> tuple[str, str]:
        """Write and sync one copy in tmp/; return (tmp path, new path)."""
        self.make_dirs(maildir)
        name = self.unique_name()
        tmp_path = os.path.join(maildir, "tmp", name)
        head = f"Return-Path: {sender}\n" + "".join(f"Delivered-To: {rcpt}\n" for rcpt in delivered_to)
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as error:
            raise DeliveryError("open", f"{tmp_path}: {error}") from error
        try:
            with open(fd, "wb") as handle:
                handle.write(head.encode("utf-8", "surrogateescape"))
                for block in transaction.iter_message(BLOCK_SIZE):
                    handle.write(block)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException as error:
            try:
                os.unlink(tmp_path)
            except OSError:
                pass
            if isinstance(error, OSError):
                raise DeliveryError("write", f"{tmp_path}: {error}") from error
            raise
        return tmp_path, os.path.join(maildir, "new", name)
