"""Hostile model files, built in the test that uses them: zip bombs (deflate and bzip2),
specs that cost too much or cannot be parsed, .npy headers that lie, weights that
overflow. Each builder is quick (under a second) and small in memory even when what
it builds declares gigabytes inside. And SettledWatch, the hostile-input tests' Watch.

Imported by path, like server_helpers: `sys.path.insert(0, str(Path(__file__).parent))`.
"""

from __future__ import annotations

import bz2
import functools
import io
import json
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npy_format

import serve_process

SMALL_SPEC = {"input": [1, 28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}
MiB = 2 ** 20


@dataclass
class RawMember:
    """A zip member as it goes into the file: its compressed bytes and what the
    directory says about them (which need not be true)."""
    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    crc: int = 0
    size: int = 0      # the uncompressed size the directory declares
    flags: int = 0

    @classmethod
    def stored(cls, name: str, content: bytes) -> "RawMember":
        return cls(name, content, zipfile.ZIP_STORED, zlib.crc32(content), len(content))

    @classmethod
    def deflated(cls, name: str, content: bytes) -> "RawMember":
        packer = zlib.compressobj(6, zlib.DEFLATED, -15)
        return cls(name, packer.compress(content) + packer.flush(), zipfile.ZIP_DEFLATED,
                   zlib.crc32(content), len(content))


def zip_of(members: list[RawMember]) -> bytes:
    """A zip archive written byte by byte (zipfile would compress, and check, itself)."""
    out, directory = io.BytesIO(), io.BytesIO()
    for member in members:
        name = member.name.encode()
        version = 46 if member.method == zipfile.ZIP_BZIP2 else 20
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, version, member.flags, member.method,
                              0, 0x21, member.crc, len(member.data), member.size,
                              len(name), 0))
        out.write(name)
        out.write(member.data)
        directory.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, version,
                                    member.flags, member.method, 0, 0x21, member.crc,
                                    len(member.data), member.size, len(name), 0, 0, 0, 0,
                                    0o644 << 16, offset))
        directory.write(name)
    start, listing = out.tell(), directory.getvalue()
    out.write(listing)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                          len(listing), start, 0))
    return out.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape: tuple, dtype="<f4", version=(1, 0)) -> bytes:
    """Only the header of an .npy file: what it claims, with no data behind it."""
    buffer = io.BytesIO()
    header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape}
    writer = {(1, 0): npy_format.write_array_header_1_0,
              (2, 0): npy_format.write_array_header_2_0}[version]
    writer(buffer, header)
    return buffer.getvalue()


def text_npy(text: str) -> bytes:
    """A str as np.savez stores it: a 0-d unicode array."""
    return npy(np.array(text))


def model_members(model_bytes: bytes) -> list[RawMember]:
    """The members of a file written by Model.to_bytes, stored, ready to be changed."""
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
        return [RawMember.stored(info.filename, archive.read(info))
                for info in archive.infolist()]


def replaced(members: list[RawMember], *new: RawMember) -> list[RawMember]:
    names = {member.name for member in new}
    return [m for m in members if m.name not in names] + list(new)


def spec_file(spec_text: str, *others: RawMember) -> bytes:
    return zip_of([RawMember.stored("spec.npy", text_npy(spec_text)), *others])


# -- bombs ------------------------------------------------------------------------------

# The zip directory's CRC-32 of gigabytes of zeros, worked out without reading them
# (zlib.crc32 over 2 GiB took 1-7 s a bomb): CRC-32 is linear, so appending n zero bytes
# to a message is a 32x32 matrix over GF(2) applied to its CRC (zlib's crc32_combine).

def _gf2_times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


@functools.lru_cache(maxsize=None)
def _append_zero_bytes(power: int) -> tuple[int, ...]:
    """The operator on a CRC-32 (its register) that appends 2**power zero bytes."""
    if power == 0:
        one_bit = [0xEDB88320] + [1 << n for n in range(31)]
        matrix = one_bit
        for _ in range(3):  # 8 bits
            matrix = [_gf2_times(matrix, row) for row in matrix]
        return tuple(matrix)
    half = _append_zero_bytes(power - 1)
    return tuple(_gf2_times(half, row) for row in half)


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of A + B from crc1 = crc32(A), crc2 = crc32(B), length2 = len(B)."""
    power = 0
    while length2:
        if length2 & 1:
            crc1 = _gf2_times(_append_zero_bytes(power), crc1)
        length2 >>= 1
        power += 1
    return crc1 ^ crc2


@functools.lru_cache(maxsize=None)
def _crc32_of_zero_bytes(power: int) -> int:
    """zlib.crc32(bytes(2**power))."""
    if power <= 20:
        return zlib.crc32(bytes(1 << power))
    half = _crc32_of_zero_bytes(power - 1)
    return crc32_combine(half, half, 1 << (power - 1))


def crc32_of_zeros(count: int, crc: int = 0) -> int:
    """zlib.crc32(bytes(count), crc), in microseconds whatever `count`."""
    for power in range(count.bit_length()):
        if count >> power & 1:
            crc = crc32_combine(crc, _crc32_of_zero_bytes(power), 1 << power)
    return crc


def deflate_bomb_member(name: str, prefix: bytes, zeros: int, declared: int | None = None,
                        chunk: int = 16 * MiB) -> RawMember:
    """`prefix` then `zeros` zero bytes (a multiple of `chunk`), deflated. After a full
    flush deflate starts afresh, so every chunk of zeros compresses to the same bytes:
    1.9 GiB is made by compressing 16 MiB once (~0.05 s) and repeating it."""
    assert zeros % chunk == 0
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = packer.compress(prefix) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(bytes(chunk)) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush()
    crc = crc32_of_zeros(zeros, zlib.crc32(prefix))
    size = len(prefix) + zeros
    return RawMember(name, head + block * (zeros // chunk) + tail, zipfile.ZIP_DEFLATED,
                     crc, size if declared is None else declared)


BZIP2_EOS = 0x177245385090  # a bzip2 stream's end-of-stream magic (48 bits)


@functools.lru_cache(maxsize=None)
def bzip2_zeros(blocks: int, block_zeros: int = 40 * MiB) -> tuple[bytes, int]:
    """A bzip2 stream of `blocks` x `block_zeros` zero bytes, and its length. bzip2
    blocks decode on their own, so one block is compressed (~0.4 s, once a session: the
    bombs share it) and its bits repeated; the stream's CRC is combined from the blocks'
    as bzip2 does."""
    single = bz2.compress(bytes(block_zeros), 9)
    bits, nbits = int.from_bytes(single[4:], "big"), 8 * (len(single) - 4)
    for pad in range(8):  # the stream ends: EOS magic, 32-bit CRC, 0..7 bits of padding
        end = nbits - pad - 80
        if (bits >> (nbits - end - 48)) & (2 ** 48 - 1) == BZIP2_EOS:
            break
    else:
        raise AssertionError("no end of stream found")
    block = bits >> (nbits - end)
    block_crc = (block >> (end - 80)) & 0xFFFFFFFF  # after the block's 48-bit magic
    stream, combined = 0, 0
    for _ in range(blocks):
        stream = (stream << end) | block
        combined = (((combined << 1) | (combined >> 31)) & 0xFFFFFFFF) ^ block_crc
    stream = (((stream << 48) | BZIP2_EOS) << 32) | combined
    total = blocks * end + 80
    stream <<= (-total) % 8
    return single[:4] + stream.to_bytes((total + 7) // 8, "big"), blocks * block_zeros


def bzip2_bomb_member(name: str, blocks: int = 51) -> RawMember:
    """About 2 GiB of zeros (51 x 40 MiB) in under 2 KB."""
    data, size = bzip2_zeros(blocks)
    return RawMember(name, data, zipfile.ZIP_BZIP2, crc32_of_zeros(size), size)


# -- the hostile files of issue 11 ------------------------------------------------------

def small_model_bytes(fill: float | None = None, seed: int = 3) -> bytes:
    from cnn.model import Model
    model = Model(SMALL_SPEC, seed=seed)
    if fill is not None:
        for weights in model.parameters():
            weights.fill(fill)
    return model.to_bytes({"preset": "hostile"})


def deflate_bomb(declared: int | None = None) -> bytes:
    """A valid small spec, and its dense weight a 1.9 GiB member of zeros (1.98 MB)."""
    header = npy_header((784, 10))
    bomb = deflate_bomb_member("1.weight.npy", header, 118 * 16 * MiB, declared)
    return zip_of(replaced(model_members(small_model_bytes()), bomb))


def bzip2_bomb(members: int = 1) -> bytes:
    names = ["1.weight.npy", "1.bias.npy"][:members]
    return zip_of(replaced(model_members(small_model_bytes()),
                           *(bzip2_bomb_member(name) for name in names)))


def wide_dense_spec_file(layers: int = 20, units: int = 4096) -> bytes:
    spec = {"input": [1, 28, 28], "layers": [{"type": "flatten"}]
            + [{"type": "dense", "units": units}] * layers + [{"type": "dense", "units": 10}]}
    return spec_file(json.dumps(spec))


def huge_array_header(elements_side: int = 10 ** 6) -> bytes:
    """A valid small spec whose dense weight's header declares side x side elements."""
    lying = RawMember.stored("1.weight.npy", npy_header((elements_side, elements_side)))
    return zip_of(replaced(model_members(small_model_bytes()), lying))


def nested_spec_file(depth: int = 30_000) -> bytes:
    return spec_file("[" * depth + "]" * depth)


def long_integer_spec_file(digits: int = 5000) -> bytes:
    return spec_file('{"input": [1, 28, 28], "layers": [{"type": "flatten"}, '
                     '{"type": "dense", "units": ' + "9" * digits + "}]}")


def overflowing_weights() -> bytes:
    """Finite float32 weights near 1e38: every output overflows to infinity."""
    return small_model_bytes(fill=3e38)



# -- watching the server under attack --------------------------------------------------

class SettledWatch(serve_process.Watch):
    """serve_process.Watch, whose memory-back check stops waiting at the first sample
    within its bound. Watch's verdict is "the lowest sample over `settle` s (3) is under
    start + rss_return": the same verdict, found without waiting out the 3 s when it is
    already true (every hostile-input test waited them out, ~35 s of the suite). When it
    is not, it waits the whole `settle` s and returns the lowest sample, as Watch does."""

    _within: int | None = None

    def end_rss(self, settle: float = 3.0, within: int | None = None) -> int:
        """The lowest sample over `settle` s, or the first within `within` bytes of the
        start (the bound assert_unharmed checks, when it asks)."""
        within = self._within if within is None else within
        if within is None:
            return super().end_rss(settle)
        pid, bound = self.server.process.pid, self.start_rss + within
        deadline, lowest = time.monotonic() + settle, serve_process.resident_bytes(pid)
        while lowest > bound and time.monotonic() < deadline:
            time.sleep(0.1)
            lowest = min(lowest, serve_process.resident_bytes(pid))
        return lowest

    def assert_unharmed(self, *args, rss_return: int = 50 * MiB, **kwargs) -> None:
        self._within = rss_return
        try:
            super().assert_unharmed(*args, rss_return=rss_return, **kwargs)
        finally:
            self._within = None
