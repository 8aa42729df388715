"""State that outlives one connection: the store behind greylisting, karma and rate_limit.

A qpsmtpd process lives for one connection, so whatever a plugin must
remember about a client between connections lives in a store.  Two kinds:

* **local** (the default): an SQLite database `<db_dir>/state.sqlite`
  in WAL mode; each plugin has its namespace in it (keys `greylist:...`,
  `karma:...`, `rate_limit:...`), and plugins with the same `db_dir` share
  one file and one open per session.
* **Redis** (`redis HOST[:PORT]` on the plugin line, or `config/state_redis`):
  one server shared by every MX host (`qpsmtpd.state_redis`).  redis-py is imported only by a
  session whose plugins use Redis (40 ms for Debian's redis-py 4.3 loaded
  by `import_redis`, 90 ms for redis-py 8: two to four whole sessions; a
  session on the local store never loads it).

Why SQLite for the local store: it is in the standard library (nothing to
install, nothing to run), it is safe with many processes at once (a
`BEGIN IMMEDIATE` transaction is a read-modify-write no other process can
interleave with, so no increment is lost; a process that dies mid-write
loses nothing, the kernel drops its locks and the journal rolls back), and
in WAL mode readers never wait for the writer.  Durability is traded for
speed: `synchronous=OFF`, no fsync at all (an fsync costs 1-8 ms, more than
the whole budget of these plugins; measured in bench/state.py).  A process
that crashes loses nothing; an operating-system crash or power cut may
lose recent updates or damage the file, and a damaged file is moved aside
(`state.sqlite.damaged-<time>`, logged) and the store starts empty: for
greylisting and reputation data that costs some clients one more
greylisting delay, nothing else.  One file holds any number of keys (a
file or a DBM per key would not scale to the hundred thousand addresses a
busy MX sees).  The cost per session is about 0.6 ms to load the module
and 0.5 ms to open, update and close: the module is loaded without
`functools` (SQLite's C module imports it only for a statement cache we
switch off), which would cost 2 ms more.  The Perl qpsmtpd's DBM file with
a lock file around it serialises every access and
needs a DBM module (5 ms to import `_dbm` here).

Failure is never silent and never a hang: the local store waits at most
`timeout` seconds (default 1) for a lock held by another process, a Redis
call has the same socket time-out for connecting and for each answer, and
any failure raises `StateError`; each plugin logs it and applies its
documented fallback (greylisting and rate_limit let the client through, as
the Perl greylisting does; karma neither penalises nor records).  Once a
Redis server failed, or the local file stayed locked past the time-out,
the process does not try it again (so a session with three plugins waits
once, not at every hook).

Time comes from `qpsmtpd.state.clock()` (tests replace it).  Expiry: every
key is written with a time to live; expired keys read as missing (local)
or vanish (Redis); the local store deletes expired rows now and then.

    from qpsmtpd.state import open_store, StateError
    store = open_store(self.qp, "greylist", redis=..., db_dir=..., timeout=1.0)
    store.update(key, lambda old: (new_value, result), ttl)   # atomic read-modify-write
    store.incr(key, 1, ttl)                                    # atomic counter
    store.slot_acquire(key, member, ttl) / store.slot_release(key, member)
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

DEFAULT_TIMEOUT = 1.0
_PRUNE_ONE_IN = 64          # one process in 64 deletes expired rows of the local store
_down: dict[str, str] = {}  # Redis servers and local files that failed in this process -> why


def __getattr__(name: str) -> Any:
    """`state.RedisStore`, `state.import_redis`: from qpsmtpd.state_redis, loaded on first use."""
    if name in ("RedisStore", "import_redis"):
        from . import state_redis

        return getattr(state_redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def clock() -> float:
    """Seconds since the epoch; the one time source of the state layer and its plugins."""
    return time.time()


class StateError(Exception):
    """The store is down, locked past the time-out, or unusable: fall back and log."""


class Store:
    """What every backend offers.  Keys and values are text."""

    kind = "?"
    namespace = ""

    def describe(self) -> str:
        return f"{self.kind} store {self.namespace}"

    def get(self, key: str) -> str | None:
        raise NotImplementedError

    def set(self, key: str, value: str, ttl: float) -> None:
        self.update(key, lambda old: (value, None), ttl)

    def update(self, key: str, change: Callable[[str | None], tuple[str | None, Any]], ttl: float) -> Any:
        """Atomically: `change(current)` -> (new value, or None to delete; result to return)."""
        raise NotImplementedError

    def incr(self, key: str, amount: int, ttl: float) -> int:
        """Add `amount` to a counter (created at 0 with time to live `ttl`); the new value."""
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def items(self) -> Iterator[tuple[str, str]]:
        """Every live (key, value), in no particular order (for tools)."""
        raise NotImplementedError

    def prune(self) -> int:
        """Delete expired keys now; how many."""
        return 0

    def slot_acquire(self, key: str, member: str, ttl: float) -> int:
        """Register `member` (one connection) under `key` for `ttl` s; how many live members now."""
        raise NotImplementedError

    def slot_release(self, key: str, member: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# -- local store: SQLite ------------------------------------------------------
_sqlite: Any = None

SCHEMA = (
    "PRAGMA journal_mode=WAL",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL)"
    " WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires)",
    "CREATE TABLE IF NOT EXISTS slots (key TEXT NOT NULL, member TEXT NOT NULL, expires REAL NOT NULL,"
    " PRIMARY KEY (key, member)) WITHOUT ROWID",
)


def _import_sqlite() -> Any:
    """SQLite's C module, loaded without `functools` when nothing loaded it yet.

    `_sqlite3` imports functools only to build per-connection statement
    caches; we open connections with `cached_statements=0`, so a stand-in
    `lru_cache` that caches nothing serves, and saves ~2 ms per process.
    """
    global _sqlite
    if _sqlite is not None:
        return _sqlite
    import sys

    if "functools" in sys.modules:
        import _sqlite3
    else:
        import types

        stand_in = types.ModuleType("functools")
        stand_in.lru_cache = lambda maxsize=128, typed=False: (lambda function: function)  # type: ignore[attr-defined]
        sys.modules["functools"] = stand_in
        try:
            import _sqlite3
        finally:
            if sys.modules.get("functools") is stand_in:
                del sys.modules["functools"]
    _sqlite = _sqlite3
    return _sqlite3


LOCAL_FILE = "state.sqlite"
_open_dbs: dict[str, Any] = {}  # path -> connection, shared by the stores of one process


class LocalStore(Store):
    """A namespace in an SQLite file (`<db_dir>/state.sqlite`); safe with any number of processes.

    Stores of one process that use the same file share one connection (one
    open per session, however many plugins); keys are `<namespace>:<key>`.
    """

    kind = "local"

    def __init__(self, path: str, namespace: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.namespace = namespace
        self.timeout = timeout
        self._prefix = namespace + ":"
        self._writes = 0

    def describe(self) -> str:
        return f"local store {self.path}"

    def _error(self, error: BaseException) -> StateError:
        text = str(error)
        if "locked" in text or "busy" in text:
            text = f"locked by another process for more than {self.timeout:g}s"
        return StateError(f"{self.describe()}: {text}")

    def _connection(self) -> Any:
        if self.path in _down:  # locked once past the time-out: the rest of the session does not wait again
            raise StateError(f"{self.describe()}: {_down[self.path]}, not retried in this session")
        db = _open_dbs.get(self.path)
        if db is not None:
            return db
        try:
            sqlite = _import_sqlite()
        except ImportError as error:  # a Python built without SQLite
            raise StateError(f"{self.describe()}: Python's sqlite3 module is missing ({error})") from None
        try:
            if not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # never world-readable
            db = sqlite.connect(self.path, timeout=self.timeout, isolation_level=None, cached_statements=0)
            db.execute("PRAGMA synchronous=OFF")
        except OSError as error:
            raise self._error(error) from None
        except sqlite.Error as error:
            raise self._failure(error) from None
        _open_dbs[self.path] = db
        return db

    def _run(self, work: Callable[[Any], Any], write: bool) -> Any:
        """Run `work(db)`: a write in one IMMEDIATE transaction, a read (one SELECT) as it is;
        create the schema if it is missing."""
        db = self._connection()
        sqlite = _sqlite
        for attempt in (1, 2):
            try:
                if not write:  # one SELECT: atomic on its own, and WAL readers never wait
                    return work(db)
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = work(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result
            except sqlite.OperationalError as error:
                if "no such table" in str(error) and attempt == 1:
                    self._create_schema(db)
                    continue
                raise self._failure(error) from None
            except sqlite.Error as error:
                raise self._failure(error) from None
        raise StateError(f"{self.describe()}: cannot create the tables")

    def _failure(self, error: BaseException) -> StateError:
        """The StateError for an SQLite error: a damaged file is set aside, a lock remembered."""
        text = str(error)
        if "malformed" in text or "not a database" in text:
            return self._set_aside(error)
        failure = self._error(error)
        if "locked by another process" in str(failure):
            _down[self.path] = f"locked by another process for more than {self.timeout:g}s"
        return failure

    def _set_aside(self, error: BaseException) -> StateError:
        """A damaged file (a power cut before the OS wrote it out): move it aside, start afresh."""
        db = _open_dbs.pop(self.path, None)
        if db is not None:
            db.close()
        aside = f"{self.path}.damaged-{int(time.time())}"
        try:
            os.rename(self.path, aside)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.rename(self.path + suffix, aside + suffix)
        except OSError as rename_error:
            return StateError(f"{self.describe()}: {error}; could not move it aside: {rename_error}")
        return StateError(f"{self.describe()}: {error}; moved to {aside}, a new store starts empty")

    def _create_schema(self, db: Any) -> None:
        try:
            for statement in SCHEMA:
                db.execute(statement)
        except _sqlite.Error as error:
            raise self._error(error) from None

    def _maybe_prune(self, db: Any) -> None:
        self._writes += 1
        if self._writes == 1 and os.getpid() % _PRUNE_ONE_IN == 0:
            now = clock()
            db.execute("DELETE FROM kv WHERE expires <= ?", (now,))
            db.execute("DELETE FROM slots WHERE expires <= ?", (now,))

    def get(self, key: str) -> str | None:
        def read(db: Any) -> str | None:
            row = db.execute("SELECT value FROM kv WHERE key = ? AND expires > ?",
                             (self._prefix + key, clock())).fetchone()
            return row[0] if row else None
        return self._run(read, write=False)

    def update(self, key: str, change: Callable[[str | None], tuple[str | None, Any]], ttl: float) -> Any:
        full_key = self._prefix + key

        def read_modify_write(db: Any) -> Any:
            now = clock()
            row = db.execute("SELECT value FROM kv WHERE key = ? AND expires > ?", (full_key, now)).fetchone()
            new_value, result = change(row[0] if row else None)
            if new_value is None:
                db.execute("DELETE FROM kv WHERE key = ?", (full_key,))
            else:
                db.execute("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
                           (full_key, new_value, now + ttl))
            self._maybe_prune(db)
            return result
        return self._run(read_modify_write, write=True)

    def incr(self, key: str, amount: int, ttl: float) -> int:
        def add(db: Any) -> int:
            now = clock()
            row = db.execute(
                "INSERT INTO kv (key, value, expires) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET"
                " value = CASE WHEN expires > ?4 THEN CAST(value AS INTEGER) + ?2 ELSE ?2 END,"
                " expires = CASE WHEN expires > ?4 THEN expires ELSE ?3 END RETURNING value",
                (self._prefix + key, amount, now + ttl, now)).fetchone()
            self._maybe_prune(db)
            return int(row[0])
        return self._run(add, write=True)

    def delete(self, key: str) -> bool:
        return self._run(lambda db: db.execute("DELETE FROM kv WHERE key = ?",
                                               (self._prefix + key,)).rowcount > 0, write=True)

    def _range(self) -> tuple[str, str]:
        return self._prefix, self.namespace + ";"  # every key that starts with "<namespace>:"

    def items(self) -> Iterator[tuple[str, str]]:
        rows = self._run(lambda db: db.execute(
            "SELECT key, value FROM kv WHERE key >= ? AND key < ? AND expires > ?",
            (*self._range(), clock())).fetchall(), write=False)
        size = len(self._prefix)
        return iter([(key[size:], value) for key, value in rows])

    def prune(self) -> int:
        def delete_expired(db: Any) -> int:
            now = clock()
            count = db.execute("DELETE FROM kv WHERE key >= ? AND key < ? AND expires <= ?",
                               (*self._range(), now)).rowcount
            db.execute("DELETE FROM slots WHERE key >= ? AND key < ? AND expires <= ?", (*self._range(), now))
            return count
        return self._run(delete_expired, write=True)

    def slot_acquire(self, key: str, member: str, ttl: float) -> int:
        full_key = self._prefix + key

        def acquire(db: Any) -> int:
            now = clock()
            db.execute("DELETE FROM slots WHERE key = ? AND expires <= ?", (full_key, now))
            db.execute("INSERT OR REPLACE INTO slots (key, member, expires) VALUES (?, ?, ?)",
                       (full_key, member, now + ttl))
            return db.execute("SELECT COUNT(*) FROM slots WHERE key = ?", (full_key,)).fetchone()[0]
        return self._run(acquire, write=True)

    def slot_release(self, key: str, member: str) -> None:
        self._run(lambda db: db.execute("DELETE FROM slots WHERE key = ? AND member = ?",
                                        (self._prefix + key, member)), write=True)

    def close(self) -> None:
        db = _open_dbs.pop(self.path, None)
        if db is not None:
            try:
                db.close()
            except Exception:  # closing must never fail a session
                pass


# -- choosing a store -----------------------------------------------------------------
def split_host_port(server: str, default_port: int = 6379) -> tuple[str, int]:
    """`host[:port]`, `[v6]:port` or a unix socket path -> (host, port)."""
    if server.startswith("/"):
        return server, 0
    if server.startswith("["):
        host, _bracket, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else default_port
    host, colon, port = server.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, int(port)
    return server, default_port


def redis_settings(qp: Any) -> dict[str, str]:
    """`config/state_redis`: `SERVER [db=N] [password_file=PATH] [timeout=SECONDS]` (first line)."""
    line = qp.config_value("state_redis")
    if not line:
        return {}
    words = str(line).split()
    settings = {"server": words[0]}
    for word in words[1:]:
        name, _equals, value = word.partition("=")
        settings[name] = value
    return settings


def _read_password(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.readline().strip() or None
    except OSError as error:
        raise StateError(f"redis password_file {path}: {error.strerror}") from None


def candidate_dirs(qp: Any, own_dir: str) -> list[str]:
    """Where a local store goes when the plugin has no `db_dir` (the Perl plugins' order)."""
    install = getattr(qp, "install_dir", "") or "."
    return [own_dir, os.path.join(install, "var", "db"), os.path.join(install, "config")]


def uses_redis(qp: Any, redis: str | None) -> bool:
    return bool(redis or redis_settings(qp).get("server"))


def require_redis_library(qp: Any, redis: str | None) -> None:
    """At load time: a plugin told to use Redis does not load without redis-py (as any plugin
    whose library is missing: the log names the packages), rather than fall back at every use."""
    if not uses_redis(qp, redis):
        return
    from .optional import describe, is_installed
    from .plugin import PluginError

    if not is_installed("redis"):
        raise PluginError(f"cannot use Redis: {describe('redis')}")


def store_problems(store: Store) -> list[str]:
    """For `--check-config`: can the store be used now?  (Redis: PING; local: open and read.)"""
    try:
        if store.kind == "redis":
            store._call(lambda client: client.ping())  # type: ignore[attr-defined]
        elif os.path.exists(store.path) and os.stat(store.path).st_uid == os.geteuid():
            store.get("--check-config--")
        elif os.path.exists(store.path):
            # another user's file (a check run as root): opening it could leave -wal/-shm files
            # the server cannot open, so only look at the permissions
            if not os.access(store.path, os.R_OK | os.W_OK):
                return [f"{store.describe()}: not readable and writable by this user"]
    except StateError as error:
        return [f"the state store cannot be used: {error} (the plugin lets clients through until it can)"]
    return []


class StoreUser:
    """Mixin of the plugins that keep state here (greylisting, karma, rate_limit).

    `prepare_store` at register time: no store is opened yet, a Redis-bound
    plugin refuses to load without redis-py, a bad `db_dir` is warned about
    (and reported by --check-config).  `check_config` probes the store the
    plugin's own `store()` opens.
    """

    def prepare_store(self, qp: Any, redis: str | None, db_dir: str | None) -> None:
        from .constants import LOGWARN

        self._store: Store | None = None
        require_redis_library(qp, redis or None)
        problem = db_dir_problem(db_dir)
        if problem:
            self.log(LOGWARN, problem)  # type: ignore[attr-defined]
            self.argument_warnings.append(problem)  # type: ignore[attr-defined]

    def check_config(self) -> list[str]:
        """--check-config: the store can be opened (local) or answers PING (Redis)."""
        try:
            return store_problems(self.store())  # type: ignore[attr-defined]
        except StateError as error:
            return [str(error)]


def db_dir_problem(db_dir: str | None) -> str | None:
    """What is wrong with a configured `db_dir` (for the plugins' load-time warning), or None."""
    if db_dir and not (os.path.isdir(db_dir) and os.access(db_dir, os.W_OK | os.X_OK)):
        return f"db_dir {db_dir} is not a writable directory (the plugin will fall back at every use)"
    return None


def choose_dir(db_dir: str | None, candidates: list[str]) -> str:
    if db_dir:
        if not os.path.isdir(db_dir) or not os.access(db_dir, os.W_OK | os.X_OK):
            raise StateError(f"db_dir {db_dir} is not a writable directory")
        return db_dir
    for directory in candidates:
        if os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK):
            return directory
    raise StateError(f"no writable directory for the local store (tried {', '.join(candidates)}; set db_dir)")


def open_store(qp: Any, namespace: str, *, redis: str | None = None, db_dir: str | None = None,
               timeout: float | None = None, own_dir: str | None = None) -> Store:
    """The store a plugin asked for: `redis` (its argument), else `config/state_redis`, else local.

    Nothing is connected or opened here; the first operation does that (and
    may raise StateError).  A bad `db_dir` raises StateError at once.
    """
    settings = {} if redis else redis_settings(qp)
    server = redis or settings.get("server")
    if timeout is None:
        try:
            timeout = float(settings.get("timeout") or DEFAULT_TIMEOUT)
        except ValueError:
            timeout = DEFAULT_TIMEOUT
    if server:
        password = _read_password(settings["password_file"]) if settings.get("password_file") else None
        db_text = settings.get("db") or "0"
        from .state_redis import RedisStore

        return RedisStore(server, namespace, timeout, int(db_text) if db_text.isdigit() else 0, password)
    directory = choose_dir(db_dir, candidate_dirs(qp, own_dir or f"/var/lib/qpsmtpd/{namespace}"))
    return LocalStore(os.path.join(directory, LOCAL_FILE), namespace, timeout)
