"""Reader for D. J. Bernstein's constant database format (qmail `.cdb` maps).

Pure Python, no dependency: qmail's `morercpthosts.cdb` and tcprules files
are read with `CdbReader(path).get(key)`; `keys()` walks every record.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Iterator

_PAIR = struct.Struct("<II")


def cdb_hash(key: bytes) -> int:
    """The cdb hash function (djb's times-33 with xor)."""
    value = 5381
    for byte in key:
        value = (((value << 5) + value) & 0xFFFFFFFF) ^ byte
    return value


class CdbReader:
    """Read-only access to one cdb file; the file is read whole (maps are small)."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as handle:
            self._data = handle.read()
        if len(self._data) < 2048:
            raise ValueError(f"{path}: not a cdb file (too short)")

    def _slot(self, index: int) -> tuple[int, int]:
        return _PAIR.unpack_from(self._data, index)

    def get_all(self, key: bytes | str) -> list[bytes]:
        """Every value stored under `key`, in file order."""
        if isinstance(key, str):
            key = key.encode()
        digest = cdb_hash(key)
        table_pos, slot_count = self._slot((digest & 0xFF) * 8)
        values: list[bytes] = []
        if not slot_count:
            return values
        start = (digest >> 8) % slot_count
        for step in range(slot_count):
            slot_hash, record_pos = self._slot(table_pos + ((start + step) % slot_count) * 8)
            if not record_pos:
                break
            if slot_hash != digest:
                continue
            key_len, value_len = self._slot(record_pos)
            key_start = record_pos + 8
            if self._data[key_start:key_start + key_len] == key:
                value_start = key_start + key_len
                values.append(self._data[value_start:value_start + value_len])
        return values

    def get(self, key: bytes | str, default: bytes | None = None) -> bytes | None:
        values = self.get_all(key)
        return values[0] if values else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (bytes, str)) and bool(self.get_all(key))

    def __getitem__(self, key: bytes | str) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record in file order."""
        end = _PAIR.unpack_from(self._data, 0)[0]  # the first hash table starts after the records
        pos = 2048
        while pos < end:
            key_len, value_len = self._slot(pos)
            key_start = pos + 8
            value_start = key_start + key_len
            yield self._data[key_start:value_start], self._data[value_start:value_start + value_len]
            pos = value_start + value_len

    def keys(self) -> Iterator[bytes]:
        for key, _value in self.items():
            yield key


def write_cdb(path: str, records: list[tuple[bytes, bytes]]) -> None:
    """Write a cdb file (used by tests and tools; qmail's own cdbmake is equivalent)."""
    body = bytearray()
    tables: list[list[tuple[int, int]]] = [[] for _ in range(256)]
    pos = 2048
    for key, value in records:
        body += _PAIR.pack(len(key), len(value)) + key + value
        digest = cdb_hash(key)
        tables[digest & 0xFF].append((digest, pos))
        pos += 8 + len(key) + len(value)
    header = bytearray()
    table_bytes = bytearray()
    for entries in tables:
        slot_count = len(entries) * 2
        header += _PAIR.pack(pos + len(table_bytes), slot_count)
        slots = [(0, 0)] * slot_count
        for digest, record_pos in entries:
            index = (digest >> 8) % slot_count
            while slots[index][1]:
                index = (index + 1) % slot_count
            slots[index] = (digest, record_pos)
        for slot in slots:
            table_bytes += _PAIR.pack(*slot)
    with open(path, "wb") as handle:
        handle.write(bytes(header) + bytes(body) + bytes(table_bytes))
