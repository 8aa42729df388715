"""Command-line options of qpsmtpd.py (`--help`, `--version`, `--check-config`)."""

from __future__ import annotations

import sys

from . import __version__

USAGE = """usage: qpsmtpd.py [--help] [--version] [--check-config [DIR]]

Without options, runs one SMTP session on stdin/stdout (start it from
tcpserver, xinetd or a systemd socket with Accept=yes).

  --help                 show this help
  --version              print the version
  --check-config [DIR]   load every configured plugin (config DIR, default
                         the install's config/) and report problems
"""


def run_cli(install_dir: str, argv: list[str]) -> int:
    option = argv[0]
    if option in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if option in ("-V", "--version"):
        sys.stdout.write(f"qpsmtpd.py {__version__}\n")
        return 0
    if option == "--check-config":
        from .checkconfig import check_config
        return check_config(install_dir, argv[1] if len(argv) > 1 else None)
    sys.stderr.write(USAGE)
    return 2
