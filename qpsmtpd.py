#!/usr/bin/env python3
"""qpsmtpd for Python: run one SMTP session on stdin/stdout.

Start it from tcpserver, xinetd or a systemd socket (Accept=yes) with an
absolute interpreter path; it finds lib/, plugins/ and config/ beside
itself, whatever the working directory.
"""

import os
import sys

INSTALL_DIR = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(INSTALL_DIR, "lib"))

from qpsmtpd.session import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(INSTALL_DIR, sys.argv[1:]))
