"""Config files the way qpsmtpd and qmail read them.

A config item `name` is looked up, per item, in `$QPSMTPD_CONFIG/name` if
that file exists, else `<install>/config/name`, else `$QMAIL/control/name`
(default `/var/qmail/control`): the Perl qpsmtpd's order.  The install
ships no `config/` (its defaults are in `config.sample/`, read only when
pointed at), so nothing shipped masks an admin's qmail control files.  Comment lines (`#`) and blank lines are
dropped and whitespace is trimmed.  `$include FILE` and `$include DIR`
(sorted, dot files skipped) splice other files in, with loop protection.
Each file is read at most once per process.  `name.cdb` maps (type "map")
are read with the pure-Python cdb reader.

The `config` and `user_config` hooks are run by `Qpsmtpd.config()` before
this module is asked; this module only knows files.
"""

from __future__ import annotations

import os

from .cdb import CdbReader

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from typing import Callable
    ErrorLog = Callable[[str], None]


def _hostname() -> str:
    return os.uname().nodename


DEFAULTS: dict[str, Callable[[], list[str]]] = {
    "me": lambda: [_hostname()],
    "timeout": lambda: ["1200"],
}


class Config:
    """File-backed config lookup with a per-process cache."""

    def __init__(self, install_dir: str, on_error: ErrorLog | None = None) -> None:
        self.install_dir = install_dir
        self._cache: dict[str, list[str]] = {}
        self._dir_memo: dict[str, str] = {}
        self._maps: dict[str, CdbReader | None] = {}
        self._on_error = on_error or (lambda message: None)

    def config_dir(self, name: str) -> str:
        """The directory that holds config item `name` (qpsmtpd's precedence)."""
        cached = self._dir_memo.get(name)
        if cached is not None:
            return cached
        directory = os.path.join(os.environ.get("QMAIL", "/var/qmail"), "control")
        install_config = os.path.join(self.install_dir, "config")
        if os.path.exists(os.path.join(install_config, name)):
            directory = install_config
        override = os.environ.get("QPSMTPD_CONFIG")
        if override and os.path.exists(os.path.join(override, name)):
            directory = override
        self._dir_memo[name] = directory
        return directory

    def search_dirs(self) -> list[tuple[str, str]]:
        """(where it comes from, directory) in lookup order, whether or not it exists."""
        dirs = []
        override = os.environ.get("QPSMTPD_CONFIG")
        if override:
            dirs.append(("$QPSMTPD_CONFIG", override))
        dirs.append(("install config/", os.path.join(self.install_dir, "config")))
        dirs.append(("$QMAIL/control" if os.environ.get("QMAIL") else "qmail control",
                     os.path.join(os.environ.get("QMAIL", "/var/qmail"), "control")))
        return dirs

    def path(self, name: str) -> str:
        return os.path.join(self.config_dir(name), name)

    def from_file(self, name: str) -> list[str]:
        """The lines of config item `name` (empty list when there is no file)."""
        cached = self._cache.get(name)
        if cached is None:
            cached = self._read(name, self.path(name), [])
            self._cache[name] = cached
        return list(cached)

    def get(self, name: str, kind: str | None = None) -> list[str] | CdbReader | dict:
        """Lines from the file, else the built-in default; a map for kind 'map'."""
        if kind == "map":
            return self.get_map(name)
        lines = self.from_file(name)
        if lines:
            return lines
        default = DEFAULTS.get(name)
        return default() if default else []

    def get_map(self, name: str) -> CdbReader | dict:
        """The `name.cdb` map, or an empty dict when there is none."""
        if name not in self._maps:
            path = os.path.join(self.config_dir(name + ".cdb"), name + ".cdb")
            reader = None
            if os.path.exists(path):
                try:
                    reader = CdbReader(path)
                except (OSError, ValueError) as error:
                    self._on_error(f"could not read {path}: {error}")
            self._maps[name] = reader
        return self._maps[name] or {}

    def clear_cache(self) -> None:
        self._cache.clear()
        self._dir_memo.clear()
        self._maps.clear()

    def _read(self, name: str, path: str, visited: list[str]) -> list[str]:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return []
        except OSError as error:
            self._on_error(f"could not open configfile {path}: {error}")
            return []
        visited = visited + [path]
        lines: list[str] = []
        for raw_line in raw.decode("utf-8", "surrogateescape").splitlines():
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if parts[0] == "$include" and len(parts) == 2:
                lines.extend(self._include(name, parts[1], path, visited))
            else:
                lines.append(line)
        return lines

    def _include(self, name: str, target: str, context: str, visited: list[str]) -> list[str]:
        if not target.startswith("/"):
            target = os.path.join(self.config_dir(target), target)
        if target in visited:
            chain = " includes ".join(visited + [target])
            self._on_error(f"Circular $include reference in config {name}: {chain}")
            return []
        if os.path.isdir(target):
            try:
                entries = sorted(os.listdir(target))
            except OSError as error:
                self._on_error(f"Couldn't open directory {target}, referenced from {context} ({error})")
                return []
            files = [os.path.join(target, entry) for entry in entries
                     if not entry.startswith(".") and os.path.isfile(os.path.join(target, entry))]
        else:
            files = [target]
        lines: list[str] = []
        for file_path in files:
            lines.extend(self._read(name, file_path, visited + [target]))
        return lines
