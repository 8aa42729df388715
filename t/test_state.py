"""The state layer (qpsmtpd.state): atomic updates from 20 concurrent sessions, expiry,
two hosts sharing one Redis, and the fallbacks when the local store is locked or Redis is
down or hangs (within the time limits, no traceback).  Real redis-server from t/components."""

import os
import signal
import subprocess
import sys
import time

import pytest

from qpsmtpd import state
from state_support import (Backend, backend, base_config, clock, dialogue, log_lines,  # noqa: F401
                           redis_daemon, reply_codes, runnable_install, session, spawn_session)
from qpsmtpd.testing import run_session

SESSIONS = 20


# -- the store itself -------------------------------------------------------------------
def test_counter_update_and_expiry(backend, clock):
    store = backend.store("unit")
    assert store.incr("hits", 1, 60) == 1
    assert store.incr("hits", 2, 60) == 3
    assert store.update("rec", lambda old: ("a" if old is None else old + "b", old), 60) is None
    assert store.update("rec", lambda old: (old + "b", old), 60) == "a"
    assert store.get("rec") == "ab"
    assert dict(store.items()) == {"hits": "3", "rec": "ab"}
    assert store.delete("rec") and store.get("rec") is None
    if backend.kind == "local":  # Redis expires keys on its own clock; the local store on ours
        clock.advance(61)
        assert store.get("hits") is None
        assert store.incr("hits", 1, 60) == 1
        assert store.prune() == 0


def test_slots(backend, clock):
    store = backend.store("unit")
    assert store.slot_acquire("conn:192.0.2.1", "a", 30) == 1
    assert store.slot_acquire("conn:192.0.2.1", "b", 30) == 2
    assert store.slot_acquire("conn:192.0.2.1", "a", 30) == 2  # renewing is not a new slot
    store.slot_release("conn:192.0.2.1", "a")
    assert store.slot_acquire("conn:192.0.2.1", "c", 30) == 2
    clock.advance(31)  # b and c were never released (killed processes): they expire
    assert store.slot_acquire("conn:192.0.2.1", "d", 30) == 1


def test_local_store_file_is_private(tmp_path, clock):
    store = state.LocalStore(str(tmp_path / "x.sqlite"), "x")
    store.incr("k", 1, 60)
    assert os.stat(tmp_path / "x.sqlite").st_mode & 0o077 == 0


def test_split_host_port():
    assert state.split_host_port("redis.example") == ("redis.example", 6379)
    assert state.split_host_port("10.0.0.5:6380") == ("10.0.0.5", 6380)
    assert state.split_host_port("[2001:db8::5]:6390") == ("2001:db8::5", 6390)
    assert state.split_host_port("/run/redis.sock") == ("/run/redis.sock", 0)


# -- 20 concurrent sessions on one key ---------------------------------------------------
def test_concurrent_sessions_lose_no_update(backend):
    """20 qpsmtpd.py processes at once from one IP: karma records 20 naughty connections,
    rate_limit counts 20 recipients (read-modify-write and counter on one key each)."""
    install = runnable_install([
        "dont_require_anglebrackets", f"karma {backend.args()} negative 1000 timeout 20",
        f"rate_limit {backend.args()} rcpt 1000/1d timeout 20", "rcpt_ok"])
    lines = ["HELO c.test", "MAIL FROM:a@sender.test", "RCPT TO:<x@example.test>", "QUIT"]
    procs = [spawn_session(install, []) for _ in range(SESSIONS)]
    for proc in procs:
        proc.stdin.write(dialogue(lines))
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for out, err in outputs:
        assert reply_codes(out) == [220, 250, 250, 250, 221], err
        assert b"Traceback" not in err
    karma = dict(backend.store("karma").items())
    assert karma["192.0.2.1"].split(":")[1:] == ["20", "0", "20"]  # naughty, nice, connects
    counts = [int(value) for key, value in backend.store("rate_limit").items() if key.startswith("rcpt:")]
    assert sum(counts) == SESSIONS


# -- two hosts, one Redis ------------------------------------------------------------------
@pytest.mark.components
def test_two_hosts_share_one_redis(redis_daemon, clock):
    """Two configs ("mx1", "mx2") pointing at one redis-server see each other's state."""
    from state_support import flush_redis
    flush_redis(redis_daemon.port)
    server = f"127.0.0.1:{redis_daemon.port}"

    def on_host(name, lines, plugins):
        config = base_config([*plugins, "rcpt_ok"], me=[name], state_redis=[f"{server} timeout=2"])
        return run_session(lines, config=config, capture_queue=True)

    mail = ["HELO c.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<x@example.test>", "QUIT"]
    grey = ["greylisting black_timeout 60"]
    assert on_host("mx1.example.test", mail, grey).replies()[2][0] == 450
    clock.advance(61)
    assert on_host("mx2.example.test", mail, grey).replies()[2][0] == 250  # mx2 saw mx1's first try

    limit = ["rate_limit rcpt 3/1h"]
    assert on_host("mx1.example.test", mail, limit).replies()[3][0] == 250
    assert on_host("mx2.example.test", mail, limit).replies()[3][0] == 250
    assert on_host("mx1.example.test", mail, limit).replies()[3][0] == 250
    over = on_host("mx2.example.test", mail, limit)
    assert over.replies()[3][0] == 450  # the fourth recipient, counted across both hosts

    karma_plugins = ["dont_require_anglebrackets", "karma reject connect"]
    on_host("mx1.example.test", ["HELO c.test", "MAIL FROM:a@sender.test", "QUIT"], karma_plugins)
    assert on_host("mx2.example.test", ["HELO c.test", "QUIT"], karma_plugins).codes() == [550]


# -- fallbacks ---------------------------------------------------------------------------------
ALL_THREE = "greylisting {args} timeout 0.3", "karma {args} timeout 0.3 reject connect", \
    "rate_limit {args} timeout 0.3 rcpt 1/1h concurrency 1"
MESSAGE = ["HELO client.test", "MAIL FROM:<a@sender.test>", "RCPT TO:<x@example.test>",
           "DATA", "Subject: x", "", "body", ".", "QUIT"]


def assert_fell_back(result, elapsed, limit):
    assert result.codes() == [220, 250, 250, 250, 354, 250, 221], result.replies()
    assert len(result.queued) == 1
    assert log_lines(result, "UNABLE TO OBTAIN GREYLIST RESULT")
    assert log_lines(result, "rate_limit store unusable")
    assert not log_lines(result, "Traceback") and not log_lines(result, "FATAL PLUGIN ERROR")
    assert elapsed < limit


def test_local_store_locked(tmp_path, clock):
    """Another process holds the write lock: the session waits at most `timeout` per plugin
    call that writes, then lets the client through."""
    plugins = [line.format(args=f"db_dir {tmp_path}") for line in ALL_THREE]
    session(["HELO c.test", "QUIT"], plugins)  # creates the file
    script = ("import sqlite3, sys, time\n"
              f"db = sqlite3.connect({str(tmp_path / 'state.sqlite')!r}, isolation_level=None)\n"
              "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(30)\n")
    locker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert locker.stdout.readline() == b"locked\n"
    lockers = [locker]
    try:
        start = time.monotonic()
        result = session(MESSAGE, plugins)
        elapsed = time.monotonic() - start
    finally:
        for locker in lockers:
            locker.kill()
            locker.wait()
    assert_fell_back(result, elapsed, 5.0)
    assert log_lines(result, "locked by another process for more than 0.3s")


@pytest.mark.components
def test_redis_down(clock):
    from components import free_port
    port = free_port()
    plugins = [line.format(args=f"redis 127.0.0.1:{port}") for line in ALL_THREE]
    start = time.monotonic()
    result = session(MESSAGE, plugins)
    assert_fell_back(result, time.monotonic() - start, 2.0)
    assert log_lines(result, "not retried in this session")  # one failure, then no more waiting


@pytest.mark.components
def test_redis_hangs(redis_daemon, clock):
    """redis-server stopped with SIGSTOP: connections are accepted, answers never come.
    The session waits one `timeout` (0.3 s), then every plugin falls back."""
    plugins = [line.format(args=f"redis 127.0.0.1:{redis_daemon.port}") for line in ALL_THREE]
    os.kill(redis_daemon.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        result = session(MESSAGE, plugins)
        elapsed = time.monotonic() - start
    finally:
        os.kill(redis_daemon.pid, signal.SIGCONT)
    assert_fell_back(result, elapsed, 2.0)
    assert log_lines(result, "Timeout")


def test_redis_py_not_loaded_without_redis(tmp_path):
    """A session whose plugins use the local store never imports redis-py (70-90 ms)."""
    install = runnable_install([f"greylisting db_dir {tmp_path}", f"karma db_dir {tmp_path}",
                                f"rate_limit db_dir {tmp_path} rcpt 10/1m", "rcpt_ok"])
    env = {"PATH": "/usr/bin:/bin", "TCPREMOTEIP": "192.0.2.1", "HOME": install}
    run = subprocess.run([sys.executable, "-X", "importtime", os.path.join(install, "qpsmtpd.py")],
                         input=dialogue(["HELO c.test", "MAIL FROM:<a@b.test>", "QUIT"]),
                         capture_output=True, env=env, timeout=30)
    assert reply_codes(run.stdout) == [220, 250, 450, 221]
    imported = [line.split("|")[-1].strip() for line in run.stderr.decode().splitlines() if "|" in line]
    assert "_sqlite3" in imported
    assert not [name for name in imported if name.split(".")[0] in ("redis", "functools", "sqlite3")]
    assert "qpsmtpd.state_redis" not in imported


def test_damaged_local_file_is_set_aside(tmp_path, clock):
    """A file that is not a database (a power cut with synchronous=OFF): set aside, start empty."""
    (tmp_path / "state.sqlite").write_bytes(b"this is not an SQLite database, just garbage" * 200)
    store = state.LocalStore(str(tmp_path / "state.sqlite"), "greylist")
    with pytest.raises(state.StateError, match="moved to .*state.sqlite.damaged-"):
        store.incr("k", 1, 60)
    assert store.incr("k", 1, 60) == 1
    assert list(tmp_path.glob("state.sqlite.damaged-*"))


def test_namespaces_share_one_file(tmp_path, clock):
    grey = state.LocalStore(str(tmp_path / "state.sqlite"), "greylist")
    karma = state.LocalStore(str(tmp_path / "state.sqlite"), "karma")
    grey.set("192.0.2.1", "g", 60)
    karma.set("192.0.2.1", "k", 60)
    assert (grey.get("192.0.2.1"), karma.get("192.0.2.1")) == ("g", "k")
    assert list(karma.items()) == [("192.0.2.1", "k")]


@pytest.mark.components
def test_bench_state_runs(tmp_path):
    """bench/state.py still works (one run, local store only)."""
    from qpsmtpd.testing import REPO_DIR
    run = subprocess.run([sys.executable, os.path.join(REPO_DIR, "bench", "state.py"), "--runs", "1", "--no-redis"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "+grey+karma local" in run.stdout and "above typical" in run.stdout


@pytest.mark.components  # redis-py
def test_check_config_reports_an_unusable_store(tmp_path):
    from components import free_port
    from qpsmtpd.testing import REPO_DIR
    config = tmp_path / "config"
    config.mkdir()
    (tmp_path / "db").mkdir()
    (config / "plugins").write_text(f"greylisting db_dir {tmp_path}/db\nkarma redis 127.0.0.1:{free_port()} timeout 0.5\n"
                                    f"rate_limit db_dir {tmp_path}/missing rcpt 5/1m\nrcpt_ok\n")
    run = subprocess.run([sys.executable, os.path.join(REPO_DIR, "qpsmtpd.py"), "--check-config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "ok     plugins: greylisting" in run.stdout
    assert "karma redis 127.0.0.1" in run.stdout and "the state store cannot be used" in run.stdout
    assert "db_dir " + str(tmp_path / "missing") + " is not a writable directory" in run.stdout


def test_redis_without_redis_py_does_not_load(tmp_path, monkeypatch, clock):
    """Told to use Redis without redis-py installed: the plugin does not load (421, the log
    names the packages), like any plugin whose library is missing."""
    from qpsmtpd import optional
    monkeypatch.setitem(optional._found, "redis", False)
    result = session(["HELO c.test", "QUIT"], ["greylisting redis 127.0.0.1:6379"])
    assert result.codes() == [421]
    assert log_lines(result, "python3-redis")


@pytest.mark.components
@pytest.mark.parametrize("python", sorted({sys.executable, "/usr/bin/python3"}))
def test_redis_store_from_a_real_process(redis_daemon, python):
    """qpsmtpd.py on each interpreter that has redis-py (Debian's python3-redis 4.3 is loaded
    with stand-ins for asyncio and importlib.metadata, newer versions without): greylisting
    over Redis refuses the first try and counts the second."""
    from state_support import flush_redis
    probe = subprocess.run([python, "-c", "import redis"], capture_output=True)
    assert probe.returncode == 0, f"{python} has no redis-py (.ci/packages.d/state.txt installs python3-redis)"
    flush_redis(redis_daemon.port)
    install = runnable_install([f"greylisting redis 127.0.0.1:{redis_daemon.port}", "rcpt_ok"])
    env = {"PATH": "/usr/bin:/bin", "TCPREMOTEIP": "192.0.2.1", "HOME": install}
    for expected in ("initial DENYSOFT, unknown", "black DENYSOFT - 1 deferred connections"):
        run = subprocess.run([python, os.path.join(install, "qpsmtpd.py")], capture_output=True, timeout=60,
                             input=dialogue(["HELO c.test", "MAIL FROM:<a@b.test>", "QUIT"]), env=env)
        assert reply_codes(run.stdout) == [220, 250, 450, 221], run.stderr
        assert expected.encode() in run.stderr


@pytest.fixture(scope="module")
def redis_with_password():
    """A private redis-server that wants a password (built like components.redis_server)."""
    import components

    password = "pw-for-the-test"

    def start():
        base = components.private_dir("redis-auth-")
        port = components.free_port()
        log = base / "redis.log"
        argv = [components.find_binary("redis-server"), "--bind", components.LOCALHOST, "--port", str(port),
                "--save", "", "--appendonly", "no", "--dir", str(base), "--requirepass", password,
                "--logfile", str(log)]
        proc = components._spawn(argv, base / "redis.out")
        return components.Daemon("redis-server", proc, base, log, port=port)

    def ready(daemon):
        return components._answers(lambda: components.tcp_exchange(
            daemon.port, b"PING\r\n", until=b"\r\n").startswith(b"-NOAUTH"))

    with components._running(start, ready) as daemon:
        yield daemon, password


@pytest.mark.components
def test_state_redis_with_password_file(redis_with_password, tmp_path, clock):
    """config/state_redis names the server for every plugin; password_file= authenticates;
    a wrong password is a logged fallback like a server that is down."""
    daemon, password = redis_with_password
    (tmp_path / "pw").write_text(password + "\n")
    (tmp_path / "bad").write_text("wrong\n")
    mail = ["HELO c.test", "MAIL FROM:<a@sender.test>", "QUIT"]
    good = [f"127.0.0.1:{daemon.port} password_file={tmp_path / 'pw'} timeout=1"]
    assert session(mail, ["greylisting"], state_redis=good).replies()[2][0] == 450
    clock.advance(3001)
    second = session(mail, ["greylisting"], state_redis=good)
    assert second.replies()[2][0] == 250 and log_lines(second, "pass: timed out (grey)")
    from state_support import forget_process_state
    forget_process_state()
    bad = [f"127.0.0.1:{daemon.port} password_file={tmp_path / 'bad'}"]
    refused = session(mail, ["greylisting"], state_redis=bad)
    assert refused.replies()[2][0] == 250
    assert log_lines(refused, "UNABLE TO OBTAIN GREYLIST RESULT") and log_lines(refused, "redis store")
