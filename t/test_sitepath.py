"""`python3 -I -S qpsmtpd.py`: no site start-up work, yet optional libraries in site-packages are found."""

import os
import subprocess
import sys

import pytest

from qpsmtpd.testing import make_install

SESSION = b"HELO client.test\r\nQUIT\r\n"


def run(plugins, tmp_path, flags=("-I", "-S")):
    (tmp_path / "probe.py").write_text(
        "import sys\n"
        "from qpsmtpd.constants import LOGWARN\n"
        "def hook_helo(self, transaction, host, *rest):\n"
        "    self.log(LOGWARN, f'site-imported={\"site\" in sys.modules}')\n")
    install = make_install({"plugins": ["probe", *plugins], "rcpthosts": ["example.test"], "me": "mx.test",
                            "plugin_dirs": [str(tmp_path)], "dns_servers": ["127.0.0.1"]}, runnable=True)
    env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *flags, os.path.join(install, "qpsmtpd.py")], input=SESSION,
                          capture_output=True, env=env, timeout=30)


def test_a_session_without_optional_libraries_never_loads_site(tmp_path):
    done = run(["rcpt_ok"], tmp_path)
    assert done.stdout.startswith(b"220 ") and b"221 " in done.stdout, done.stdout + done.stderr
    assert b"site-imported=False" in done.stderr


@pytest.mark.components  # dnspython, installed in the interpreter's site-packages
def test_an_optional_library_is_still_found_under_dash_s(tmp_path):
    done = run(["dnsbl", "rcpt_ok"], tmp_path)
    assert b"421" not in done.stdout, done.stdout + done.stderr
    assert done.stdout.startswith(b"220 ") and b"221 " in done.stdout
