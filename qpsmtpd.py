#!/usr/bin/env python3
"""qpsmtpd for Python: run one SMTP session on stdin/stdout.

Start it from tcpserver, xinetd or a systemd socket (Accept=yes) with an
absolute interpreter path; it finds lib/, plugins/ and config/ beside
itself, whatever the working directory.  `qpsmtpd.py --listen PORT` is the
forkserver instead (docs/forkserver.md).
"""

import os
import sys

INSTALL_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(INSTALL_DIR, "lib"))

if __name__ == "__main__":
    if sys.flags.no_site:  # `python3 -I -S`, as the deploy recipes start it: site-packages when needed
        from qpsmtpd.sitepath import install
        install()
    from qpsmtpd.session import main
    status = main(INSTALL_DIR, sys.argv[1:])
    # Everything is written and closed (replies, queue, log lines; the transaction was reset):
    # skip the interpreter's shutdown, which costs a per-connection process about 4 ms.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
