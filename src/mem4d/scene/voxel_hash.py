"""A vectorised open-addressing hash map from int64 voxel keys to int32 slots.

Lookups and inserts are batched NumPy operations (linear probing, load factor <= 0.5), so a
write touching P voxels costs O(P) amortised regardless of how many voxels are stored; the
table doubles when it fills, which is the only O(N) step and happens O(log N) times.

Voxel keys pack three signed integer coordinates into one int64 (21 bits each, so +-2^20
voxels per axis; at 1 cm voxels that is +-10 km).

Example::

    >>> import numpy as np
    >>> table = HashTable()
    >>> table.insert(np.array([5, 9], dtype=np.int64), np.array([0, 1], dtype=np.int32))
    >>> table.lookup(np.array([9, 7], dtype=np.int64)).tolist()
    [1, -1]
"""

from __future__ import annotations

import numpy as np

__all__ = ["COORD_LIMIT", "HashTable", "pack_coords", "unpack_keys"]

_BITS = 21
_OFFSET = 1 << (_BITS - 1)
COORD_LIMIT = _OFFSET - 1  # |coordinate| must stay below this
_EMPTY = np.iinfo(np.int64).min
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def pack_coords(ijk: np.ndarray) -> np.ndarray:
    """(N, 3) int64 coordinates in (-2^20, 2^20) -> (N,) int64 keys."""
    c = ijk.astype(np.int64) + _OFFSET
    return (c[:, 0] << (2 * _BITS)) | (c[:, 1] << _BITS) | c[:, 2]


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """Inverse of `pack_coords`: (N,) keys -> (N, 3) int64 coordinates."""
    m = (1 << _BITS) - 1
    return np.stack([(keys >> (2 * _BITS)) & m, (keys >> _BITS) & m, keys & m], axis=1) - _OFFSET


class HashTable:
    """int64 key -> int32 value map; keys must never equal int64 min (the empty marker)."""

    max_load = 0.5

    def __init__(self, capacity: int = 1024) -> None:
        self._alloc(capacity)
        self.count = 0

    def _alloc(self, capacity: int) -> None:
        cap = 16
        while cap < capacity:
            cap *= 2
        self.keys = np.full(cap, _EMPTY, dtype=np.int64)
        self.vals = np.full(cap, -1, dtype=np.int32)
        self._mask = np.int64(cap - 1)
        self._shift = np.uint64(64 - int(np.log2(cap)))

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = keys.view(np.uint64) * _GOLDEN  # Fibonacci hashing: top bits of the product
        return (h >> self._shift).astype(np.int64)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """(N,) int64 keys -> (N,) int32 values, -1 where absent."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        out = np.full(len(keys), -1, dtype=np.int32)
        if len(keys) == 0 or self.count == 0:
            return out
        idx = self._hash(keys)
        act = np.arange(len(keys))
        while act.size:
            pos = idx[act]
            tk = self.keys[pos]
            hit = tk == keys[act]
            out[act[hit]] = self.vals[pos[hit]]
            cont = ~(hit | (tk == _EMPTY))
            act = act[cont]
            idx[act] = (pos[cont] + 1) & self._mask
        return out

    def insert(self, keys: np.ndarray, vals: np.ndarray) -> None:
        """Adds (N,) keys that are unique and not yet present, with their (N,) values."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        vals = np.ascontiguousarray(vals, dtype=np.int32)
        n = len(keys)
        if n == 0:
            return
        if self.count + n > self.max_load * self.capacity:
            self._grow(self.count + n)
        idx = self._hash(keys)
        act = np.arange(n)
        won = np.zeros(n, dtype=bool)
        while act.size:
            pos = idx[act]
            free = self.keys[pos] == _EMPTY
            cand, cpos = act[free], pos[free]
            if cand.size:
                upos, first = np.unique(cpos, return_index=True)  # one claimant per free slot wins
                winners = cand[first]
                self.keys[upos] = keys[winners]
                self.vals[upos] = vals[winners]
                won[winners] = True
            keep = ~won[act]
            act = act[keep]
            idx[act] = (pos[keep] + 1) & self._mask
        self.count += n

    def _grow(self, needed: int) -> None:
        occupied = self.keys != _EMPTY
        old_keys, old_vals = self.keys[occupied], self.vals[occupied]
        self._alloc(int(needed / self.max_load) * 2)
        self.count = 0
        self.insert(old_keys, old_vals)

    def rebuild(self, keys: np.ndarray, vals: np.ndarray) -> None:
        """Replaces the whole content (used after eviction and on load)."""
        self._alloc(max(16, int(len(keys) / self.max_load) * 2))
        self.count = 0
        self.insert(keys, vals)

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.vals.nbytes)
