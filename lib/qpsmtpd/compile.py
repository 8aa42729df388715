"""`qpsmtpd.py --compile`: write the bytecode of lib/ and of every plugin ahead of time.

Every connection is a new process, so every connection would compile each
plugin again if its bytecode could not be cached.  The plugin loader reads
bytecode where `importlib` keeps it (`__pycache__/` next to the source,
checked against the source's mtime and size) and writes it there when it
can; when the mail user cannot write to `plugins/`, nothing is cached and
every session pays for compiling.  Run this as the owner of the install
(e.g. root) after installing or changing plugins:

    /usr/bin/python3 /opt/qpsmtpd/qpsmtpd.py --compile [CONFIG_DIR]

It compiles lib/qpsmtpd/*.py and every plugin file in the plugin dirs
(`config/plugin_dirs`, then `plugins/`), including plugin files without a
`.py` suffix, which `python3 -m compileall` skips; Perl plugins (a plugin
dir copied from a Perl install) are skipped.  The mail user then only
needs read access.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

if TYPE_CHECKING:
    from collections.abc import Iterator


def compile_all(install_dir: str, argv: list[str]) -> int:
    """Compile lib/ and the plugins; prints a summary; 0 when everything compiled."""
    if argv:
        os.environ["QPSMTPD_CONFIG"] = argv[0]
    failures = 0
    compiled = 0
    for path in _sources(install_dir):
        error = compile_file(path)
        if error:
            failures += 1
            sys.stderr.write(f"{path}: {error}\n")
        else:
            compiled += 1
    sys.stdout.write(f"compiled {compiled} files" + (f", {failures} failed\n" if failures else "\n"))
    return 1 if failures else 0


def compile_file(path: str) -> str | None:
    """Write `path`'s bytecode where the plugin loader looks for it; an error text or None."""
    import importlib.util
    import py_compile

    try:
        py_compile.compile(path, cfile=importlib.util.cache_from_source(path), doraise=True)
    except (py_compile.PyCompileError, OSError) as error:
        return str(error).strip()
    return None


def plugin_dirs(install_dir: str) -> list[str]:
    from .config import Config

    builtin = os.path.join(install_dir, "plugins")
    configured = Config(install_dir).from_file("plugin_dirs")
    return configured + ([builtin] if builtin not in configured else [])


def _sources(install_dir: str) -> Iterator[str]:
    lib = os.path.join(install_dir, "lib", "qpsmtpd")
    if os.path.isdir(lib):
        yield from sorted(os.path.join(lib, name) for name in os.listdir(lib) if name.endswith(".py"))
    for directory in plugin_dirs(install_dir):
        yield from _plugin_files(directory)


def _plugin_files(directory: str) -> Iterator[str]:
    """Files that can be plugins: `name.py` or `name` without any dot, below `directory`."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or ("." in name and not name.endswith(".py")):
                continue
            path = os.path.join(root, name)
            if not name.endswith(".py"):
                from .plugin import is_perl_file

                if is_perl_file(path):
                    continue
            yield path
