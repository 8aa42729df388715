"""Command-line options of qpsmtpd.py (`--help`, `--version`, `--listen`, `--check-config`, `--compile`, `--report`)."""

from __future__ import annotations

import sys

from . import __version__

USAGE = """usage: qpsmtpd.py [--help] [--version] [--check-config [DIR] [--user NAME]] [--compile [DIR]]
                  [--report [--html FILE] [--top N] LOGFILE...]
       qpsmtpd.py --listen [ADDR:]PORT ... [options]   (qpsmtpd.py --listen --help)

Without options, runs one SMTP session on stdin/stdout.  Start it from
tcpserver, xinetd or a systemd socket with Accept=yes, naming the
interpreter by its absolute path:

  tcpserver -R -H -l0 -c 40 -b 200 0 25 /usr/bin/python3 /opt/qpsmtpd/qpsmtpd.py

(the listen backlog -b at least as large as -c; see docs/deploy.md).

  --help                 show this help
  --listen [ADDR:]PORT   the forkserver: listen, load the config and plugins
                         once, fork a process per connection
                         (docs/forkserver.md)
  --version              print the version
  --check-config [DIR] [--user NAME]
                         load every configured plugin with its arguments,
                         check every config file, TLS certificate, queue
                         target, spool and log dir (DIR is searched first,
                         like QPSMTPD_CONFIG=DIR; --user: as root, check as
                         the user the server runs as); exit status 0 ok,
                         1 problems, 2 the check cannot run
  --compile [DIR]        write bytecode for lib/ and every plugin (run it
                         as the install's owner after installing or
                         upgrading, so sessions never compile)
  --report [--html FILE] [--top N] LOGFILE...
                         what the server did, from its logs: connections,
                         accepted, refused and deferred per plugin and
                         reason, top clients and senders, per hour; text,
                         and with --html an HTML page with charts

Environment: QPSMTPD_CONFIG (a config dir searched first), QMAIL (qmail
home, default /var/qmail), and tcpserver's TCP* and RELAYCLIENT.
See docs/config.md, docs/deploy.md, docs/logging.md and, coming from the
Perl qpsmtpd, docs/migration.md.
"""


def run_cli(install_dir: str, argv: list[str]) -> int:
    option = argv[0]
    if option in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if option in ("-V", "--version"):
        sys.stdout.write(f"qpsmtpd.py {__version__}\n")
        return 0
    if option == "--listen":
        from .forkserver import main as forkserver_main
        return forkserver_main(install_dir, argv)
    if option == "--compile":
        from .compile import compile_all
        return compile_all(install_dir, argv[1:])
    if option == "--report":
        from .report import report_main
        return report_main(argv[1:])
    if option == "--check-config":
        from .checkconfig import check_config, parse_arguments
        parsed = parse_arguments(argv[1:])
        if isinstance(parsed, str):
            sys.stderr.write(f"qpsmtpd.py --check-config: {parsed}\n")
            return 2
        return check_config(install_dir, parsed[0], user=parsed[1])
    sys.stderr.write(f"qpsmtpd.py: unknown option {option}\n{USAGE}")
    return 2
