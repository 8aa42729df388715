"""Real content filters for the milter and rspamd tests: opendkim, clamav-milter, rspamd.

Each ``with`` helper starts the Debian daemon in the foreground with a
private config in a private directory (mode 0755, owned by nobody where the
daemon drops privileges), waits until it answers, and stops it by its PID.
Built on :mod:`components` (same failure policy: a missing program or a
daemon that does not come up raises ComponentError, never a skip).

rspamd runs with a minimal private config: no Redis, no network (its DNS
points at a local port where nothing answers), a five-line TLD list (the
full list costs ~17 s of start-up), one ``normal`` worker for /checkv2 and
one ``rspamd_proxy`` worker in milter mode, plus the Lua rules of
:data:`RSPAMD_RULES`, which let a test ask the real rspamd for each action
and for milter header changes by putting a header into the message.
Start-up measured 0.15-0.3 s (2.4 s the first time after installing, when
its language data is read from disk); test modules still start it once
(module-scoped fixture).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from components import (
    LOCALHOST,
    ComponentError,
    Daemon,
    _answers,
    _as_nobody,
    _kill,
    _running,
    _spawn,
    chown_nobody,
    find_binary,
    free_port,
    private_dir,
    processes,
    tcp_exchange,
)


def port_open(port: int, host: str = LOCALHOST) -> bool:
    with socket.create_connection((host, port), timeout=0.5):
        return True


def unix_socket_open(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        sock.connect(str(path))
        return True


# --------------------------------------------------------------------------
# opendkim: a signing milter
# --------------------------------------------------------------------------


@dataclasses.dataclass
class OpenDkim(Daemon):
    """opendkim signing for ``domain`` with selector ``selector``; ``dns_record`` is the key's TXT text."""

    domain: str = ""
    selector: str = ""
    dns_record: bytes = b""

    def signal_stop(self) -> None:
        # opendkim sometimes sits out SIGTERM for seconds (seen: 5 s); it keeps no state worth a clean exit
        _kill(self.proc.pid, signal.SIGKILL)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.contextmanager
def opendkim(domain: str = "example.com", selector: str = "sel1") -> Iterator[OpenDkim]:
    """opendkim in signing mode for every client (InternalHosts 0.0.0.0/0) on 127.0.0.1:PORT."""
    binary = find_binary("opendkim")
    genkey = find_binary("opendkim-genkey")

    def start() -> OpenDkim:
        base = private_dir("opendkim-")
        subprocess.run([genkey, "-D", str(base), "-d", domain, "-s", selector, "-b", "1024"], check=True,
                       capture_output=True)
        txt = (base / f"{selector}.txt").read_text()
        record = "".join(re.findall(r'"([^"]*)"', txt)).encode()
        port = free_port()
        conf = base / "opendkim.conf"
        conf.write_text("\n".join([
            "Mode s", f"Domain {domain}", f"Selector {selector}", f"KeyFile {base / (selector + '.private')}",
            "InternalHosts 0.0.0.0/0", "RequireSafeKeys false", f"Socket inet:{port}@{LOCALHOST}",
            "Syslog no", "Background no", f"PidFile {base / 'opendkim.pid'}",
            *(["UserID nobody:nogroup"] if _as_nobody() else []),
        ]) + "\n")
        chown_nobody(base)
        log = base / "opendkim.log"
        proc = _spawn([binary, "-f", "-x", str(conf)], log)
        return OpenDkim("opendkim", proc, base, log, port=port, log_paths=[log, conf],
                        domain=domain, selector=selector, dns_record=record)

    with _running(start, lambda d: _answers(lambda: port_open(d.port))) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# clamav-milter on a private clamd
# --------------------------------------------------------------------------


#: clamav-milter's reply text for an infected message (%v: the signature's name).
CLAMAV_REJECT_MSG = "Rejecting harmful e-mail: %v found."


@dataclasses.dataclass
class ClamavMilter(Daemon):
    socket_path: Path = Path()

    def signal_stop(self) -> None:
        # clamav-milter (1.4) in the foreground sits out SIGTERM for 5 s; nothing of it needs saving
        _kill(self.proc.pid, signal.SIGKILL)

    @property
    def address(self) -> str:
        return f"unix:{self.socket_path}"


@contextlib.contextmanager
def clamav_milter(clamd_socket: Path) -> Iterator[ClamavMilter]:
    """clamav-milter on a unix socket, scanning with the clamd of ``components.clamd()``; rejects what it finds."""
    binary = find_binary("clamav-milter")

    def start() -> ClamavMilter:
        base = private_dir("clamav-milter-")
        sock = base / "milter.sock"
        conf = base / "clamav-milter.conf"
        log = base / "clamav-milter.log"
        conf.write_text("\n".join([
            f"MilterSocket unix:{sock}", "MilterSocketMode 666", "FixStaleSocket true", "Foreground true",
            f"PidFile {base / 'clamav-milter.pid'}", f"ClamdSocket unix:{clamd_socket}",
            "OnClean Accept", "OnInfected Reject", f"RejectMsg {CLAMAV_REJECT_MSG}", "OnFail Defer",
            "AddHeader Replace",
            f"LogFile {log}", "LogVerbose true", "LogInfected Full", "LogClean Full", "LogTime true",
            f"TemporaryDirectory {base}", "MaxFileSize 25M", "ReadTimeout 30",
            *(["User nobody"] if _as_nobody() else []),
        ]) + "\n")
        chown_nobody(base)
        out = base / "clamav-milter.out"
        proc = _spawn([binary, f"--config-file={conf}"], out)
        return ClamavMilter("clamav-milter", proc, base, out, log_paths=[out, log, conf], socket_path=sock)

    with _running(start, lambda d: _answers(lambda: unix_socket_open(d.socket_path)), timeout=20) as daemon:
        yield daemon


# --------------------------------------------------------------------------
# rspamd: normal worker (HTTP /checkv2) and proxy worker in milter mode
# --------------------------------------------------------------------------

#: Lua rules of the test rspamd: a header in the message asks for an action or for header changes.
RSPAMD_RULES = r"""
local function header(task, name) return task:get_header(name) end
rspamd_config:register_symbol({name = 'QPT_MILTER_HEADERS', score = 0.0, callback = function(task)
  if header(task, 'X-Test-Milter') then
    task:set_milter_reply({add_headers = {['X-Rspamd-Test'] = 'added'},
                           remove_headers = {['X-Remove-Me'] = 0}})
    return true
  end
end})
rspamd_config:register_symbol({name = 'QPT_ACTION', score = 0.0, callback = function(task)
  local wanted = header(task, 'X-Test-Action')
  if wanted then
    task:set_pre_result(wanted, 'test action ' .. wanted, 'qpt')
    return true
  end
end})
rspamd_config:register_symbol({name = 'QPT_SCORE', score = 7.0, callback = function(task)
  return header(task, 'X-Test-Spammy') ~= nil
end})
rspamd_config:register_symbol({name = 'QPT_USER', score = 0.0, callback = function(task)
  local user = task:get_user()
  if user then return true, user end
end})
rspamd_config:register_symbol({name = 'QPT_FROM', score = 0.0, callback = function(task)
  local from = task:get_from('smtp')
  local rcpts = task:get_recipients('smtp')
  local ip = task:get_from_ip()
  local helo = task:get_helo()
  local parts = {}
  if from and from[1] then table.insert(parts, 'from=' .. from[1].addr) end
  if rcpts then for _, r in ipairs(rcpts) do table.insert(parts, 'rcpt=' .. r.addr) end end
  if ip and ip:is_valid() then table.insert(parts, 'ip=' .. ip:to_string()) end
  if helo then table.insert(parts, 'helo=' .. helo) end
  table.insert(parts, 'qid=' .. (task:get_queue_id() or ''))
  return true, table.concat(parts, ',')
end})
"""


@dataclasses.dataclass
class Rspamd(Daemon):
    """rspamd: ``port`` is the normal worker (HTTP), ``milter_port`` the proxy worker in milter mode,
    ``socket_path`` the normal worker's unix socket."""

    milter_port: int = 0
    socket_path: Path = Path()

    def signal_stop(self) -> None:
        # rspamd's graceful shutdown waits seconds for its workers; the tests need none of it
        for worker in [p.pid for p in processes() if p.ppid == self.proc.pid]:
            _kill(worker, signal.SIGKILL)
        _kill(self.proc.pid, signal.SIGTERM)

    @property
    def milter_address(self) -> str:
        return f"{self.host}:{self.milter_port}"


def rspamd_ping(port: int) -> bool:
    return b"pong" in tcp_exchange(port, b"GET /ping HTTP/1.0\r\n\r\n", until=b"pong")


@contextlib.contextmanager
def rspamd() -> Iterator[Rspamd]:
    """rspamd with the private config described in the module docstring (ready in about 0.2 s)."""
    binary = find_binary("rspamd")

    def start() -> Rspamd:
        base = private_dir("rspamd-")
        for sub in ("db", "tmp"):
            (base / sub).mkdir()
        (base / "tld.dat").write_text("com\norg\nnet\ntest\nexample\n")
        (base / "rules.lua").write_text(RSPAMD_RULES)
        port, milter_port = free_port(), free_port()
        sock = base / "normal.sock"
        conf = base / "rspamd.conf"
        conf.write_text(f"""
options {{ pidfile = "{base}/rspamd.pid"; dbdir = "{base}/db"; tempdir = "{base}/tmp";
  url_tld = "{base}/tld.dat"; check_all_filters = true;
  dns {{ nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 1; }} }}
logging {{ type = "file"; filename = "{base}/rspamd.log"; level = "info"; }}
actions {{ reject = 15; add_header = 6; rewrite_subject = 5.5; greylist = 4; subject = "***SPAM*** %s"; }}
worker "normal" {{ bind_socket = "{LOCALHOST}:{port}"; bind_socket = "{sock} mode=0666"; count = 1; }}
worker "rspamd_proxy" {{ bind_socket = "{LOCALHOST}:{milter_port}"; milter = yes; count = 1;
  timeout = 20s; upstream "local" {{ default = yes; self_scan = yes; }} }}
lua = "{base}/rules.lua";
""")
        chown_nobody(base)
        log = base / "rspamd.log"
        out = base / "rspamd.out"
        user = ["-u", "nobody", "-g", "nogroup"] if _as_nobody() else []
        proc = _spawn([binary, "-f", "-c", str(conf), *user], out)
        return Rspamd("rspamd", proc, base, out, port=port, log_paths=[out, log, conf],
                      milter_port=milter_port, socket_path=sock)

    def ready(daemon: Daemon) -> object:
        assert isinstance(daemon, Rspamd)
        return _answers(lambda: rspamd_ping(daemon.port) and port_open(daemon.milter_port))

    with _running(start, ready, timeout=60) as daemon:
        yield daemon


__all__ = [
    "RSPAMD_RULES",
    "ClamavMilter",
    "ComponentError",
    "OpenDkim",
    "Rspamd",
    "clamav_milter",
    "opendkim",
    "rspamd",
]
