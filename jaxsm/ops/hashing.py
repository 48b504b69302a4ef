"""TF's string hashing ops, bit for bit: StringToHashBucketFast/Strong, the legacy StringToHashBucket, and
Fingerprint (what ``tf.strings.to_hash_bucket*``, ``tf.fingerprint`` and Keras' ``Hashing`` layer save).

The three hash functions are written anew in plain Python from their reference sources (uint64 arithmetic on
Python ints, wrapped with ``& M64``); like the other string ops they run on the host with concrete inputs.
"""

from __future__ import annotations

import numpy as np

from jaxsm.dtypes import is_strings
from jaxsm.ops.registry import op
from jaxsm.ops.strings import _map, _strings

M64 = 0xFFFF_FFFF_FFFF_FFFF


def _rotr(v: int, shift: int) -> int:
    return ((v >> shift) | (v << (64 - shift))) & M64


def _fetch64(s: bytes, i: int) -> int:
    return int.from_bytes(s[i : i + 8], "little")


def _fetch32(s: bytes, i: int) -> int:
    return int.from_bytes(s[i : i + 4], "little")


# -- FarmHash Fingerprint64 ------------------------------------------------------------------------------------

K0 = 0xC3A5C85C97CB3127
K1 = 0xB492B66FBE98F273
K2 = 0x9AE16A3B2F90404F


def _shift_mix(v: int) -> int:
    return v ^ (v >> 47)


def _hash_len16(u: int, v: int, mul: int) -> int:
    """``u`` and ``v`` may be unreduced sums: only their low 64 bits reach the result."""
    a = _shift_mix(((u ^ v) * mul) & M64)
    b = _shift_mix(((v ^ a) * mul) & M64)
    return (b * mul) & M64


def _hash_len0to16(s: bytes) -> int:
    n = len(s)
    mul = K2 + n * 2
    if n >= 8:
        a = (_fetch64(s, 0) + K2) & M64
        b = _fetch64(s, n - 8)
        c = (_rotr(b, 37) * mul + a) & M64
        d = ((_rotr(a, 25) + b) * mul) & M64
        return _hash_len16(c, d, mul)
    if n >= 4:
        return _hash_len16(n + (_fetch32(s, 0) << 3), _fetch32(s, n - 4), mul)
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_shift_mix(((y * K2) ^ (z * K0)) & M64) * K2) & M64
    return K2


def _hash_len17to32(s: bytes) -> int:
    n = len(s)
    mul = K2 + n * 2
    a = (_fetch64(s, 0) * K1) & M64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & M64
    d = (_fetch64(s, n - 16) * K2) & M64
    return _hash_len16(_rotr((a + b) & M64, 43) + _rotr(c, 30) + d, a + _rotr((b + K2) & M64, 18) + c, mul)


def _hash_len33to64(s: bytes) -> int:
    n = len(s)
    mul = K2 + n * 2
    a = (_fetch64(s, 0) * K2) & M64
    b = _fetch64(s, 8)
    c = (_fetch64(s, n - 8) * mul) & M64
    d = (_fetch64(s, n - 16) * K2) & M64
    y = (_rotr((a + b) & M64, 43) + _rotr(c, 30) + d) & M64
    z = _hash_len16(y, a + _rotr((b + K2) & M64, 18) + c, mul)
    e = (_fetch64(s, 16) * mul) & M64
    f = _fetch64(s, 24)
    g = ((y + _fetch64(s, n - 32)) * mul) & M64
    h = ((z + _fetch64(s, n - 24)) * mul) & M64
    return _hash_len16(_rotr((e + f) & M64, 43) + _rotr(g, 30) + h, e + _rotr((f + a) & M64, 18) + g, mul)


def _weak_hash_len32_with_seeds(s: bytes, i: int, a: int, b: int) -> tuple[int, int]:
    w, x, y, z = (_fetch64(s, i + k) for k in (0, 8, 16, 24))
    a = (a + w) & M64
    b = _rotr((b + a + z) & M64, 21)
    c = a
    a = (a + x + y) & M64
    b = (b + _rotr(a, 44)) & M64
    return (a + z) & M64, (b + c) & M64


def fingerprint64(s: bytes) -> int:
    """FarmHash's ``farmhash::Fingerprint64`` (= ``farmhashna::Hash64``, google/farmhash src/farmhash.cc), which
    TF's ``Fingerprint64`` (tensorflow/core/platform/fingerprint.h) calls."""
    n = len(s)
    if n <= 16:
        return _hash_len0to16(s)
    if n <= 32:
        return _hash_len17to32(s)
    if n <= 64:
        return _hash_len33to64(s)
    # 64-byte blocks, all but the last (which may overlap the one before it) in the loop.
    x = (81 * K2 + _fetch64(s, 0)) & M64
    y = (81 * K1 + 113) & M64
    z = (_shift_mix((y * K2 + 113) & M64) * K2) & M64
    v = w = (0, 0)
    for i in range(0, (n - 1) // 64 * 64, 64):
        x = (_rotr((x + y + v[0] + _fetch64(s, i + 8)) & M64, 37) * K1) & M64
        y = (_rotr((y + v[1] + _fetch64(s, i + 48)) & M64, 42) * K1) & M64
        x ^= w[1]
        y = (y + v[0] + _fetch64(s, i + 40)) & M64
        z = (_rotr((z + w[0]) & M64, 33) * K1) & M64
        v = _weak_hash_len32_with_seeds(s, i, (v[1] * K1) & M64, (x + w[0]) & M64)
        w = _weak_hash_len32_with_seeds(s, i + 32, (z + w[1]) & M64, (y + _fetch64(s, i + 16)) & M64)
        z, x = x, z
    mul = K1 + ((z & 0xFF) << 1)
    i = n - 64
    w0 = (w[0] + ((n - 1) & 63)) & M64
    v0 = (v[0] + w0) & M64
    w0 = (w0 + v0) & M64
    x = (_rotr((x + y + v0 + _fetch64(s, i + 8)) & M64, 37) * mul) & M64
    y = (_rotr((y + v[1] + _fetch64(s, i + 48)) & M64, 42) * mul) & M64
    x ^= (w[1] * 9) & M64
    y = (y + v0 * 9 + _fetch64(s, i + 40)) & M64
    z = (_rotr((z + w0) & M64, 33) * mul) & M64
    v = _weak_hash_len32_with_seeds(s, i, (v[1] * mul) & M64, (x + w0) & M64)
    w = _weak_hash_len32_with_seeds(s, i + 32, (z + w[1]) & M64, (y + _fetch64(s, i + 16)) & M64)
    z, x = x, z
    return _hash_len16(_hash_len16(v[0], w[0], mul) + _shift_mix(y) * K0 + z, _hash_len16(v[1], w[1], mul) + x, mul)


# -- SipHash-2-4 ----------------------------------------------------------------------------------------------


def _sip_rounds(v: list[int], rounds: int) -> None:
    for _ in range(rounds):
        v[0] = (v[0] + v[1]) & M64
        v[2] = (v[2] + v[3]) & M64
        v[1] = _rotr(v[1], 64 - 13) ^ v[0]
        v[3] = _rotr(v[3], 64 - 16) ^ v[2]
        v[0] = _rotr(v[0], 32)
        v[2] = (v[2] + v[1]) & M64
        v[0] = (v[0] + v[3]) & M64
        v[1] = _rotr(v[1], 64 - 17) ^ v[2]
        v[3] = _rotr(v[3], 64 - 21) ^ v[0]
        v[2] = _rotr(v[2], 32)


def siphash(key0: int, key1: int, s: bytes) -> int:
    """SipHash-2-4 with key (key0, key1): TF's ``StrongKeyedHash`` (tensorflow/core/platform/strong_hash.h), i.e.
    highwayhash's ``StringHasher<SipHashState>`` (highwayhash/sip_hash.h: 8-byte little-endian packets, the last
    one zero-padded with ``len(s) & 0xFF`` in its top byte)."""
    v = [0x736F6D6570736575 ^ key0, 0x646F72616E646F6D ^ key1, 0x6C7967656E657261 ^ key0, 0x7465646279746573 ^ key1]
    padded = s + bytes(7 - len(s) % 8) + bytes([len(s) & 0xFF])
    for i in range(0, len(padded), 8):
        m = _fetch64(padded, i)
        v[3] ^= m
        _sip_rounds(v, 2)
        v[0] ^= m
    v[2] ^= 0xFF
    _sip_rounds(v, 4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


# -- TF's legacy Hash64 -----------------------------------------------------------------------------------------


def tf_hash64(s: bytes, seed: int = 0xDECAFCAFFE) -> int:
    """TF's ``Hash64(data, n, seed)`` (tsl/platform/hash.cc, a MurmurHash64A variant) with the default seed of
    ``Hash64(const std::string&)`` (tsl/platform/hash.h)."""
    m, r = 0xC6A4A7935BD1E995, 47
    n = len(s)
    h = seed ^ ((n * m) & M64)
    for i in range(0, n - n % 8, 8):
        k = (_fetch64(s, i) * m) & M64
        k = ((k ^ (k >> r)) * m) & M64
        h = ((h ^ k) * m) & M64
    if n % 8:
        h = ((h ^ int.from_bytes(s[n - n % 8 :], "little")) * m) & M64
    h = ((h ^ (h >> r)) * m) & M64
    return h ^ (h >> r)


# -- the ops ----------------------------------------------------------------------------------------------------


def _buckets(ctx, x, hash_fn) -> np.ndarray:
    """string_to_hash_bucket_op.h: ``hash(s) % num_buckets`` as int64 (the op def requires num_buckets >= 1)."""
    num_buckets = int(ctx.attr("num_buckets"))
    return _map(ctx, x, lambda s: hash_fn(s) % num_buckets, np.int64)


@op("StringToHashBucketFast")
def string_to_hash_bucket_fast(ctx, x):
    return _buckets(ctx, x, fingerprint64)


@op("StringToHashBucketStrong")
def string_to_hash_bucket_strong(ctx, x):
    key = list(ctx.attr("key"))
    if len(key) != 2:
        raise ctx.error(f"key must have 2 elements, got {len(key)}")
    key0, key1 = (int(k) & M64 for k in key)  # an int64 list attr, memcpy'd to uint64 by the kernel
    return _buckets(ctx, x, lambda s: siphash(key0, key1, s))


@op("StringToHashBucket")
def string_to_hash_bucket(ctx, x):
    return _buckets(ctx, x, tf_hash64)


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], x.size // x.shape[0] if x.shape[0] else 0)


@op("Fingerprint")
def fingerprint(ctx, data, method):
    """fingerprint_op.cc: one Fingerprint64 per row of ``data`` (its first dimension), as 8 little-endian bytes.

    A numeric row is hashed as its raw bytes (little-endian). A row of one string is hashed as the string; a row of
    several strings as the concatenated 8-byte fingerprints of its strings. (Rows of no strings, from a shape such as
    [3, 0], are hashed as empty: TF leaves those outputs uninitialized.)"""
    name = _strings(ctx, method, "the fingerprint method").reshape(-1)
    if name.size != 1 or name[0] != b"farmhash64":
        raise ctx.error(f"unsupported fingerprint method {name.tolist()} (TF supports only farmhash64)")
    if np.ndim(data) == 0:
        raise ctx.error("data must have at least one dimension")
    if is_strings(data):
        rows = _rows(_strings(ctx, data))
        if rows.shape[1] == 1:
            rows = [row[0] for row in rows]
        else:
            rows = [b"".join(fingerprint64(s).to_bytes(8, "little") for s in row) for row in rows]
    else:
        values = np.asarray(ctx.static(data, "the data"), dtype=ctx.dtype("T"))
        rows = [row.tobytes() for row in _rows(values)]
    out = [fingerprint64(row).to_bytes(8, "little") for row in rows]
    return np.frombuffer(b"".join(out), np.uint8).reshape(len(out), 8)
