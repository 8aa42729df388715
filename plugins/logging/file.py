"""logging/file - write log lines to a file or a command

Appends each log line at or below a level to a file (or pipes it into a
command), one line per event:

    <time> <host>[<pid>]: <connection id> (<hook>) <plugin>: <message>

`<time>` is formatted with `tsformat` (default `%a %b %d %T %Y`, like
`Thu Nov 21 10:04:05 2024`), `<host>` is the machine's name and the
connection id is `<connect time>.<pid>` (see `logging/connection_id`).

## Arguments

    logging/file [loglevel LEVEL] [reopen] [nosplit] [tsformat FORMAT] PATH
    logging/file [options] |COMMAND ARGS...

- `loglevel LEVEL` - the highest level written (`0`-`7`, `LOGINFO`, `INFO`).
  Default: the level of `config/loglevel` (LOGWARN without that file).
- `reopen` - open the file again in every connection, before its first
  line, even if its name did not change.
- `nosplit` - choose the file name once per connection, at its first line:
  a connection that runs past midnight stays in one file.  Without it the
  name is worked out for every line, and the file changes as soon as the
  name does.
- `tsformat FORMAT` - strftime format of the time stamp (one word).
- `PATH` - the file.  It may contain strftime conversions, so
  `/var/log/qpsmtpd/%Y-%m-%d.log` gives one file per day, and `%i`, which
  is replaced by the connection id (one file per connection).  Missing
  files are created (mode 0640); the directory must exist and be writable
  by the user qpsmtpd runs as.
- `|COMMAND` - everything after `|` is run by `/bin/sh`, once per
  connection, with the log lines on its stdin (e.g. a pager script with
  `loglevel LOGCRIT`).

Several files: load the plugin more than once with `:N`:

    logging/file loglevel LOGINFO /var/log/qpsmtpd/%Y-%m-%d.log
    logging/file:1 loglevel LOGCRIT |/usr/local/sbin/page-admin

## Notes

- Each connection is its own process, so "rotation" needs no signal: every
  new connection opens the file under its current name.  Rotate with a date
  template, or rename the file and let new connections create a new one.
- Every line is written with one `write()` to a file opened with
  `O_APPEND`, so lines of parallel connections never interleave.
- A file that cannot be opened is reported once per connection on stderr
  (when stderr is not the client) and its lines are dropped; the session
  goes on.
- An unknown option or a missing `PATH` stops the plugin from loading.
"""

import os
import re
import time

from qpsmtpd.logline import line_prefix, parse_level
from qpsmtpd.constants import DECLINED
from qpsmtpd.args import Arguments, Option

arguments = Arguments(  # register() reads the words itself: options, then the PATH or |COMMAND
    Option("loglevel", help="the highest level written: 0-7, LOGINFO or INFO"),
    Option("tsformat", help="strftime format of the time stamp"),
    Option("reopen", kind="flag", help="open the file again in every connection"),
    Option("nosplit", kind="flag", help="choose the file name once per connection"),
    free=True,
)

_OPTIONS_WITH_VALUE = ("loglevel", "tsformat")


def register(self, qp, *args):
    self.opts["loglevel"] = None  # LEVEL here is what this plugin writes, not a shift of its own lines
    self.level = qp.trace_level()
    self.reopen = self.nosplit = False
    self.tsformat = "%a %b %d %T %Y"
    words = list(args)
    while words and words[0].lower() in ("loglevel", "tsformat", "reopen", "nosplit"):
        option = words.pop(0).lower()
        if option in _OPTIONS_WITH_VALUE:
            if not words:
                raise ValueError(f"logging/file: {option} needs a value")
            value = words.pop(0)
            if option == "loglevel":
                self.level = parse_level(value)
            else:
                self.tsformat = value
        else:
            setattr(self, option, True)
    target = " ".join(words).strip()
    if not target:
        raise ValueError("logging/file: no file or |command given")
    self.is_pipe = target.startswith("|")
    self.template = target[1:].strip() if self.is_pipe else target
    if not self.template:
        raise ValueError("logging/file: empty command after |")
    self.fd = None
    self.pipe = None
    self.current = None
    self.opened_here = False
    self.failed = None
    self.hostname = os.uname().nodename
    if self.is_pipe:
        self.register_hook("post-connection", "close_pipe")


def output_name(self):
    """The template with `%i` and the strftime conversions filled in."""
    connection_id = self.qp.connection.id
    protected = re.sub(r"%(%|i)", lambda m: "%%" if m.group(1) == "%" else connection_id, self.template)
    return time.strftime(protected, time.localtime())


def _ensure_open(self):
    if self.nosplit and self.opened_here:
        return self.fd is not None or self.pipe is not None
    name = self.output_name()
    if name == self.current and not (self.reopen and not self.opened_here):
        return True
    self._close()
    self.opened_here = True
    self.current = name
    try:
        if self.is_pipe:
            import subprocess
            self.pipe = subprocess.Popen(name, shell=True, stdin=subprocess.PIPE, close_fds=True)
        else:
            self.fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as error:
        self._report_failure(name, error)
        return False
    return True


def _report_failure(self, name, error):
    if self.failed == name:
        return
    self.failed = name
    if self.qp.stderr_logging_allowed():
        text = f"{os.getpid()} logging/file: cannot open {name}: {error.strerror}\n"
        try:
            os.write(2, text.encode("utf-8", "backslashreplace"))
        except OSError:
            pass


def _close(self):
    if self.fd is not None:
        os.close(self.fd)
        self.fd = None
    if self.pipe is not None:
        try:
            self.pipe.stdin.close()
        except OSError:
            pass
        self.pipe.wait()
        self.pipe = None


def hook_logging(self, transaction, trace, hook, plugin, message):
    if trace > self.level or (plugin is not None and plugin == self.plugin_name):
        return DECLINED
    if not self._ensure_open():
        return DECLINED
    stamp = time.strftime(self.tsformat, time.localtime())
    line = (f"{stamp} {self.hostname}[{os.getpid()}]: {self.qp.connection.id}"
            f"{line_prefix(hook, plugin)} {message}\n").encode("utf-8", "backslashreplace")
    try:
        if self.pipe is not None:
            self.pipe.stdin.write(line)
            self.pipe.stdin.flush()
        else:
            os.write(self.fd, line)
    except OSError:
        pass
    return DECLINED


def close_pipe(self, transaction):
    """Let the log command see the end of its input when the session is over."""
    self._close()
    return DECLINED
