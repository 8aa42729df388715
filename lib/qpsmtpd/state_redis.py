"""The Redis store of the state layer (see qpsmtpd.state), loaded only by sessions that use Redis.

Keys are `qpsmtpd:<namespace>:<key>`.  Every call has the store's time-out
for connecting and for each answer, no retries; any failure marks the
server down for the rest of the process (`state._down`) and raises
`StateError`.
"""

from __future__ import annotations

import os
import time

from . import state
from .state import StateError, Store, split_host_port

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

DEFAULT_TIMEOUT = state.DEFAULT_TIMEOUT
REDIS_PREFIX = "qpsmtpd:"
_down = state._down


class RedisStore(Store):
    """Keys `qpsmtpd:<namespace>:<key>` on one Redis server shared by every MX host."""

    kind = "redis"

    def __init__(self, server: str, namespace: str, timeout: float = DEFAULT_TIMEOUT,
                 db: int = 0, password: str | None = None) -> None:
        self.server = server
        self.namespace = namespace
        self.timeout = timeout
        self.db = db
        self.password = password
        self._client: Any = None
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._watch_error: type[BaseException] = OSError

    def describe(self) -> str:
        return f"redis store {self.server}"

    def _key(self, key: str) -> str:
        return f"{REDIS_PREFIX}{self.namespace}:{key}"

    def client(self) -> Any:
        if self.server in _down:
            raise StateError(f"{self.describe()}: down ({_down[self.server]}), not retried in this session")
        if self._client is not None:
            return self._client
        try:
            redis = import_redis()
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as error:
            raise StateError(f"{self.describe()}: redis-py is not installed "
                             f"(pip install redis, Debian: python3-redis): {error}") from None
        self._errors = (redis.RedisError, OSError)
        self._watch_error = redis.WatchError
        options: dict[str, Any] = {
            "socket_timeout": self.timeout, "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0), "health_check_interval": 0,
            "decode_responses": True,
        }
        if "://" in self.server:
            self._client = redis.Redis.from_url(self.server, **options)
        else:
            host, port = split_host_port(self.server)
            if host.startswith("/"):
                self._client = redis.Redis(unix_socket_path=host, db=self.db, password=self.password, **options)
            else:
                self._client = redis.Redis(host=host, port=port, db=self.db, password=self.password, **options)
        return self._client

    def _call(self, work: Callable[[Any], Any]) -> Any:
        client = self.client()
        try:
            return work(client)
        except self._errors as error:
            reason = f"{type(error).__name__}: {error}"
            _down[self.server] = reason
            raise StateError(f"{self.describe()}: {reason}") from None

    def get(self, key: str) -> str | None:
        return self._call(lambda client: client.get(self._key(key)))

    def update(self, key: str, change: Callable[[str | None], tuple[str | None, Any]], ttl: float) -> Any:
        full_key = self._key(key)
        deadline = time.monotonic() + max(self.timeout, 0.1) * 5

        def optimistic(client: Any) -> Any:
            while True:
                with client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(full_key)
                        new_value, result = change(pipe.get(full_key))
                        pipe.multi()
                        if new_value is None:
                            pipe.delete(full_key)
                        else:
                            pipe.set(full_key, new_value, px=max(1, int(ttl * 1000)))
                        pipe.execute()
                        return result
                    except self._watch_error:
                        if time.monotonic() > deadline:
                            raise StateError(f"{self.describe()}: key {key} changed under us too often") from None
        return self._call(optimistic)

    def incr(self, key: str, amount: int, ttl: float) -> int:
        full_key = self._key(key)

        def add(client: Any) -> int:
            pipe = client.pipeline(transaction=True)
            pipe.set(full_key, 0, px=max(1, int(ttl * 1000)), nx=True)
            pipe.incrby(full_key, amount)
            return int(pipe.execute()[1])
        return self._call(add)

    def delete(self, key: str) -> bool:
        return bool(self._call(lambda client: client.delete(self._key(key))))

    def items(self) -> Iterator[tuple[str, str]]:
        prefix = self._key("")

        def scan(client: Any) -> list[tuple[str, str]]:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            values = client.mget(keys) if keys else []
            return [(full[len(prefix):], value) for full, value in zip(keys, values) if value is not None]
        return iter(self._call(scan))

    def slot_acquire(self, key: str, member: str, ttl: float) -> int:
        full_key = self._key(key)

        def acquire(client: Any) -> int:
            now = state.clock()
            pipe = client.pipeline(transaction=True)
            pipe.zremrangebyscore(full_key, "-inf", now)
            pipe.zadd(full_key, {member: now + ttl})
            pipe.zcard(full_key)
            pipe.pexpire(full_key, max(1, int(ttl * 1000)))
            return int(pipe.execute()[2])
        return self._call(acquire)

    def slot_release(self, key: str, member: str) -> None:
        self._call(lambda client: client.zrem(self._key(key), member))

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing must never fail a session
                pass
            self._client = None


class _PackageNotFoundError(Exception):
    pass


def _no_version(name: str) -> str:
    raise _PackageNotFoundError(name)


# What redis-py imports at its top level and the synchronous client never uses:
# importlib.metadata (its own version number, 11 ms) and asyncio (async cluster
# commands, 30 ms).  With stand-ins, Debian's redis-py 4.3 loads in 41 ms instead of 68.
_REDIS_STAND_INS = {
    "importlib.metadata": {"version": _no_version, "PackageNotFoundError": _PackageNotFoundError},
    "asyncio": {},
}


def _redis_takes_stand_ins() -> bool:
    """redis-py before 5 (no `redis/_parsers/`, which imports names from asyncio)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("redis")
    except (ImportError, ValueError):
        return False
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return bool(locations) and not os.path.isdir(os.path.join(locations[0], "_parsers"))


def import_redis() -> Any:
    """redis-py, loaded without what the synchronous client never uses (redis-py 4, as
    Debian 12 ships it); newer versions, which need asyncio at import, the ordinary way."""
    import sys

    if "redis" in sys.modules:
        return sys.modules["redis"]
    if "asyncio" not in sys.modules and "importlib.metadata" not in sys.modules and _redis_takes_stand_ins():
        from .dns import import_with_stand_ins

        try:
            return import_with_stand_ins("redis", _REDIS_STAND_INS)
        except ImportError:
            pass
        except Exception:  # a library that used a stand-in at import time in some other way
            pass
        for name in [name for name in sys.modules if name == "redis" or name.startswith("redis.")]:
            del sys.modules[name]
    import redis
    return redis
