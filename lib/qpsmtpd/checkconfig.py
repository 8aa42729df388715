"""`qpsmtpd.py --check-config [DIR]`: load the configuration the way a session would, and say what is wrong.

With DIR the files there win over the install's `config/` (exactly as with
`QPSMTPD_CONFIG=DIR` at run time).  The check reads `config/loglevel`,
loads every plugin of `config/logging` and `config/plugins` with its
arguments (init and register run; no hook is called and nothing is
logged), and tries to read every config file.  Each plugin line is reported
`ok` or `ERROR` on stdout, problems are summed up at the end, and the exit
status is 0 only when nothing is wrong (1 for problems, 2 for a DIR that is
not a directory).  Run it as the user the server runs as, so that file
permissions are checked for that user.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from .plugin import PluginError
from .qp import Qpsmtpd


class Checker:
    """Collects problems while loading one configuration."""

    def __init__(self, install_dir: str, config_dir: str | None, out: TextIO) -> None:
        self.install_dir = install_dir
        self.config_dir = config_dir
        self.out = out
        self.problems: list[str] = []
        self.qp = Qpsmtpd(install_dir)
        self.qp.disable_stderr_log()
        self.qp.conf._on_error = self.problem

    def problem(self, text: str) -> None:
        self.problems.append(text)
        self.out.write(f"ERROR  {text}\n")

    def ok(self, text: str) -> None:
        self.out.write(f"ok     {text}\n")

    def check_loglevel(self) -> None:
        lines = self.qp.conf.from_file("loglevel")
        if lines and not (lines[0].isdigit() and 0 <= int(lines[0]) <= 7):
            self.problem(f"{self.qp.conf.path('loglevel')}: not a log level 0-7: {lines[0]!r}")

    def check_plugins(self, item: str) -> int:
        lines = self.qp.conf.from_file(item)
        for line in lines:
            try:
                self.qp.load_plugin(line)
            except PluginError as error:
                self.problem(f"{item}: {line}: {error}")
            except Exception as error:  # a plugin's init may raise anything
                self.problem(f"{item}: {line}: {type(error).__name__}: {error}")
            else:
                self.ok(f"{item}: {line}")
            self.qp.hooks.pop("logging", None)  # the check itself must not write to real logs
        return len(lines)

    def check_files(self) -> int:
        count = 0
        for directory in self.searched_dirs():
            for root, _dirs, files in os.walk(directory):
                for name in sorted(files):
                    count += 1
                    self.check_readable(os.path.join(root, name))
        return count

    def check_readable(self, path: str) -> None:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            self.problem(f"{path}: cannot read: {error.strerror}")

    def searched_dirs(self) -> list[str]:
        dirs = [os.path.join(self.install_dir, "config")]
        if self.config_dir:
            dirs.insert(0, self.config_dir)
        return [d for d in dirs if os.path.isdir(d)]

    def run(self) -> int:
        self.out.write(f"checking config: {', '.join(self.searched_dirs())}"
                       f" (then {os.environ.get('QMAIL', '/var/qmail')}/control)\n")
        self.check_loglevel()
        files = self.check_files()
        plugins = self.check_plugins("logging") + self.check_plugins("plugins")
        if not plugins:
            self.problem("no plugins configured (config/plugins is missing or empty)")
        summary = f"{plugins} plugin line(s), {files} config file(s): "
        if self.problems:
            self.out.write(summary + f"{len(self.problems)} problem(s)\n")
            return 1
        self.out.write(summary + "no problems\n")
        return 0


def check_config(install_dir: str, config_dir: str | None = None, out: TextIO | None = None) -> int:
    """Run the check; the process exit status."""
    out = out or sys.stdout
    if config_dir is not None:
        if not os.path.isdir(config_dir):
            sys.stderr.write(f"qpsmtpd.py --check-config: {config_dir}: not a directory\n")
            return 2
        os.environ["QPSMTPD_CONFIG"] = os.path.abspath(config_dir)
        config_dir = os.path.abspath(config_dir)
    return Checker(install_dir, config_dir, out).run()
