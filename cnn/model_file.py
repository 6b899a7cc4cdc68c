"""Reading a model file (`.npz`) without trusting it: the one way a model is loaded, by
`Model.load`, the command line and the server alike.

A model file is a zip of `.npy` members: `spec` (JSON text), `metadata` (JSON text),
one `<layer>.weight` and `<layer>.bias` per layer with weights, and optionally
`extra.<name>` arrays (a checkpoint's optimizer state, see checkpoint.py) that a model
does not need and this loader leaves unread.

An uploaded file comes from anyone, and `np.load` trusts what it is given: a 1.98 MB
deflate bomb (1.9 GiB of zeros inside) took 2.0 GB and 19.8 s before it was refused, a
1.7 KB bzip2 member 4.1 GB, a 3.3 KB spec of 20 dense layers of 4096 units 1.43 GB and
18 s to build. So each step here is checked before the next one costs anything:

1. the zip's central directory: only the members a model file has, stored or deflated
   (what np.savez / np.savez_compressed write), each no larger (as declared) than the
   spec can need;
2. the spec, from a member of capped size, parsed as JSON (too deep or too long a number
   is a clear refusal, not a crash), and checked against a ModelLimits: the network's
   cost is worked out from the spec alone, before anything is built;
3. each weight's `.npy` header: a float dtype and exactly the shape the spec needs;
4. each member decompressed with a hard cap (the declared size is never trusted alone):
   at most the bytes its header says, and not one more;
5. every weight finite (in float32, the network's dtype); only then is the Model built
   and its weights loaded.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .cost import ModelLimits
from .layers import DTYPE
from .model import (EXTRA_PREFIX, MAX_UNITS, Model, ModelFileError, SpecError, normalize_spec,
                    spec_shapes)

SPEC, METADATA = "spec", "metadata"
MEMBER_SUFFIX = ".npy"
# What np.savez and np.savez_compressed write. bzip2 and lzma are refused unread: a
# 1.7 KB bzip2 member held 2 GiB of zeros (4.1 GB and 18.5 s to refuse it after).
ALLOWED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# np.save pads a header to 64 bytes and writes 128 for any array a model has; the .npy
# format allows 64 KB (version 1) or 4 GB (2 and 3), and numpy reads the whole header
# before checking its length: read at most this much of it.
MAX_HEADER_BYTES = 4096
# The spec is UTF-32 text in the file (4 bytes a character). A normalised spec takes
# under 80 characters a layer (64 layers: ~5 KB), so 200 a layer and 64 K at least
# leave room for any formatting, and no room for a bomb.
SPEC_CHARACTERS_PER_LAYER, MIN_SPEC_CHARACTERS = 200, 64 * 1024
# A run's metadata (its config and last epoch's figures) is under 2 KB of text.
MAX_METADATA_CHARACTERS = 256 * 1024
# Weights as float64 at most (float16, float32 and float64 are read; float32 is saved).
MAX_WEIGHT_ITEMSIZE = 8
# Spec, metadata, two arrays a layer, and a checkpoint's optimizer state (Adam: two
# moments an array, and three scalars).
MEMBERS_PER_LAYER, OTHER_MEMBERS = 6, 16
# A member's zip headers (local and central, a long name) at most: part of the largest
# file a model within the limits makes, checked before the zip is opened.
ZIP_OVERHEAD_PER_MEMBER = 1024


@dataclass(frozen=True)
class ModelFile:
    """What a checked model file holds: the model, its metadata and the names of the
    extra arrays it carries (unread)."""
    model: Model
    metadata: dict
    extra_names: tuple[str, ...]


def load_model_file(source: str | os.PathLike | bytes,
                    limits: ModelLimits | None = None) -> ModelFile:
    """Load a model file (a path, or its bytes) through every check above; ModelFileError
    naming the file (or "uploaded model") and what is wrong with it."""
    limits = limits or ModelLimits()
    name = "uploaded model" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        return _load(source, limits)
    except FileNotFoundError:
        raise ModelFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{name}: a folder, not a model file") from None
    except PermissionError:
        raise ModelFileError(f"{name}: cannot be read (permission denied)") from None
    except _Refused as refused:
        raise ModelFileError(f"{name}: {refused}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, EOFError,
            NotImplementedError, ValueError, OSError) as exc:
        # What zipfile raises on a damaged archive: a bad CRC, a truncated member, a
        # local header that does not match the directory, offsets that point nowhere
        # (ValueError: negative seek; OSError from a file), a corrupt deflate stream.
        raise ModelFileError(f"{name}: not a model file saved by cnn-live, or a damaged "
                             f"one ({_short(str(exc), 120)})") from None


class _Refused(ValueError):
    """Why a file is refused, without its name (load_model_file adds it)."""


def _load(source, limits: ModelLimits) -> ModelFile:
    if isinstance(source, (bytes, bytearray)):
        handle = io.BytesIO(source)
        size = len(source)
    else:
        size = Path(source).stat().st_size  # FileNotFoundError: "no such file"
        handle = open(source, "rb")
    with handle:
        _check_file_size(size, limits)
        try:
            archive = zipfile.ZipFile(handle)
        except zipfile.BadZipFile:
            raise _Refused("not a model file saved by cnn-live (not an .npz archive: a "
                           "model file is the zip that `cnn-live train --save` or "
                           "GET /api/model writes)") from None
        with archive:
            return _read_archive(archive, limits)


def _check_file_size(size: int, limits: ModelLimits) -> None:
    largest = (_spec_member_limit(limits) + MAX_METADATA_CHARACTERS * 4
               # weights, and a checkpoint's optimizer state (at most twice as much)
               + 3 * limits.parameters * MAX_WEIGHT_ITEMSIZE
               + _member_limit(limits) * (MAX_HEADER_BYTES + ZIP_OVERHEAD_PER_MEMBER))
    if size > largest:
        raise _Refused(f"the file is {size:,} bytes, more than any model within this "
                       f"server's limits can take ({largest:,} bytes for "
                       f"{limits.parameters:,} parameters)")


def _read_archive(archive: zipfile.ZipFile, limits: ModelLimits) -> ModelFile:
    members = _directory(archive, limits)
    spec = _read_spec(archive, members, limits)
    expected = parameter_shapes(spec)
    names = set(members) - {SPEC, METADATA}
    extras = tuple(sorted(n for n in names if n.startswith(EXTRA_PREFIX)))
    missing = sorted(set(expected) - names, key=_layer_order)
    unexpected = sorted(names - set(expected) - set(extras))
    if missing or unexpected:
        raise _Refused(f"weights do not fit the spec: missing {missing}, unexpected "
                       f"{unexpected} (a model file holds '<layer>.weight' and "
                       "'<layer>.bias' for each conv and dense layer of its spec)")
    largest_array = max((math.prod(shape) for shape in expected.values()), default=0)
    for extra in extras:  # never read here: only their declared size is held down
        _check_declared_size(members[extra], largest_array * MAX_WEIGHT_ITEMSIZE
                             + MAX_HEADER_BYTES, f"extra array {extra!r}")
    for key, shape in expected.items():
        _check_declared_size(members[key], math.prod(shape) * MAX_WEIGHT_ITEMSIZE
                             + MAX_HEADER_BYTES, f"weight {key}")
    headers = {key: _array_header(archive, members[key], key) for key in expected}
    for key, shape in expected.items():
        _check_weight_header(key, headers[key], shape)
    weights = {key: _read_weight(archive, members[key], key, headers[key])
               for key in expected}
    metadata = _read_metadata(archive, members)
    try:
        model = Model(spec)
        model.load_state(weights)
    except (ValueError, TypeError) as exc:  # never expected after the checks above
        raise _Refused(str(exc)) from None
    return ModelFile(model, metadata, extras)


# -- 1. the central directory -------------------------------------------------------------

def _member_limit(limits: ModelLimits) -> int:
    return MEMBERS_PER_LAYER * limits.layers + OTHER_MEMBERS


def _spec_member_limit(limits: ModelLimits) -> int:
    characters = max(MIN_SPEC_CHARACTERS, SPEC_CHARACTERS_PER_LAYER * limits.layers)
    return MAX_HEADER_BYTES + 4 * characters


def _directory(archive: zipfile.ZipFile, limits: ModelLimits) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name, from its central directory alone (nothing
    decompressed): known names, stored or deflated, the spec's and metadata's sizes
    capped; weights are checked once the spec says how large they may be."""
    infos = archive.infolist()
    if len(infos) > _member_limit(limits):
        raise _Refused(f"it has {len(infos):,} members; a model within this server's "
                       f"limit of {limits.layers} layers has at most "
                       f"{_member_limit(limits)}")
    if SPEC + MEMBER_SUFFIX not in (info.filename for info in infos):
        raise _Refused("not a model file saved by cnn-live (no spec inside)")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        key = info.filename[:-len(MEMBER_SUFFIX)] \
            if info.filename.endswith(MEMBER_SUFFIX) else None
        if key is None or not _known_name(key):
            raise _Refused(f"not a model file saved by cnn-live: unknown member "
                           f"{_short(info.filename)!r} (a model file holds only spec.npy, "
                           "metadata.npy, <layer>.weight.npy, <layer>.bias.npy and "
                           "extra.<name>.npy)")
        if key in members:
            raise _Refused(f"member {_short(info.filename)!r} appears twice")
        if info.compress_type not in ALLOWED_COMPRESSION:
            raise _Refused(f"member {_short(info.filename)!r} is compressed with method "
                           f"{info.compress_type} ({_method_name(info.compress_type)}); "
                           "only stored or deflated members are read: save it with "
                           "np.savez or np.savez_compressed, as cnn-live does")
        if info.flag_bits & 0x1:
            raise _Refused(f"member {_short(info.filename)!r} is encrypted: a model file is "
                           "a plain zip (np.savez)")
        if info.compress_size > _most_compressed_bytes(info):
            # More compressed data than its declared content can need: a stream that
            # goes on past what the directory says (a bomb declaring a small size).
            raise _Refused(f"member {_short(info.filename)!r} holds {info.compress_size:,} bytes "
                           f"of compressed data for {info.file_size:,} bytes of content: "
                           "a damaged or altered file")
        members[key] = info
    _check_declared_size(members[SPEC], _spec_member_limit(limits), "its spec",
                         f"a spec of up to {limits.layers} layers needs")
    if METADATA in members:
        _check_declared_size(members[METADATA], MAX_HEADER_BYTES + 4 * MAX_METADATA_CHARACTERS,
                             "its metadata", "metadata may take")
    return members


def _known_name(key: str) -> bool:
    if key in (SPEC, METADATA):
        return True
    if key.startswith(EXTRA_PREFIX):
        rest = key[len(EXTRA_PREFIX):]
        return 0 < len(rest) <= 100 and all(c.isalnum() or c in "._-" for c in rest)
    index, _, param = key.partition(".")
    return index.isdigit() and len(index) <= 6 and param in ("weight", "bias")


def _most_compressed_bytes(info: zipfile.ZipInfo) -> int:
    """Stored data is its content; deflate at worst falls back to stored blocks, 5
    bytes of framing each 64 KB."""
    if info.compress_type == zipfile.ZIP_STORED:
        return info.file_size
    return info.file_size + info.file_size // 1000 + 64


def _method_name(method: int) -> str:
    return {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}.get(method, "unknown")


def _check_declared_size(info: zipfile.ZipInfo, limit: int, what: str,
                         bound: str = "its spec allows") -> None:
    if info.file_size > limit:
        raise _Refused(f"{what} declares {info.file_size:,} bytes inside, more than "
                       f"{bound} ({limit:,})")


# -- 2. the spec --------------------------------------------------------------------------

def _read_spec(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
               limits: ModelLimits) -> dict:
    text = _read_text(archive, members[SPEC], "its spec", _spec_member_limit(limits))
    spec = _parse_json(text, "its spec")
    try:
        limits.check_model(spec)  # normalises and costs the spec: no arrays made
        return normalize_spec(spec)
    except SpecError as exc:  # LimitError is a SpecError
        raise _Refused(f"its spec cannot be used: {exc}") from None


def _read_metadata(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict:
    if METADATA not in members:
        return {}
    text = _read_text(archive, members[METADATA], "its metadata",
                      MAX_HEADER_BYTES + 4 * MAX_METADATA_CHARACTERS)
    metadata = _parse_json(text, "its metadata")
    return metadata if isinstance(metadata, dict) else {}


def _read_text(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, limit: int) -> str:
    """A 0-d unicode array's text (how np.savez stores a str)."""
    header = _array_header(archive, info, what)
    shape, _, dtype = header.shape, header.fortran_order, header.dtype
    if shape != () or dtype.kind != "U":
        raise _Refused(f"{what} must be JSON text (a 0-d unicode array), got an array of "
                       f"shape {shape} and dtype {dtype}")
    raw = _read_data(archive, info, header, dtype.itemsize, limit, what)
    try:
        text = raw.decode("utf-32-le" if dtype.byteorder in "<=|" else "utf-32-be")
    except UnicodeDecodeError:
        raise _Refused(f"{what} is not valid text") from None
    return text.rstrip("\x00")


def _parse_json(text: str, what: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise _Refused(f"{what} is nested too deeply to be JSON of a model "
                       "(a spec is an object with a list of layers)") from None
    except json.JSONDecodeError as exc:
        raise _Refused(f"{what} is not valid JSON ({exc})") from None
    except ValueError:  # Python reads integers of at most 4,300 digits
        raise _Refused(f"{what} holds a number of over 4,300 digits, too long to read "
                       f"(a size in a spec is at most {MAX_UNITS:,})") from None


def parameter_shapes(spec: dict) -> dict[str, tuple[int, ...]]:
    """The shape of every weight array a normalised spec needs, by name
    (`<layer>.weight`, `<layer>.bias`), worked out without making any array."""
    shapes: dict[str, tuple[int, ...]] = {}
    inputs = [tuple(spec["input"]), *spec_shapes(spec)[:-1]]
    for index, (entry, shape_in) in enumerate(zip(spec["layers"], inputs)):
        if entry["type"] == "conv":
            kernel = entry["kernel"]
            shapes[f"{index}.weight"] = (entry["filters"], shape_in[0], kernel, kernel)
            shapes[f"{index}.bias"] = (entry["filters"],)
        elif entry["type"] == "dense":
            shapes[f"{index}.weight"] = (shape_in[0], entry["units"])
            shapes[f"{index}.bias"] = (entry["units"],)
    return shapes


def _layer_order(key: str):
    index, _, param = key.partition(".")
    return (int(index) if index.isdigit() else -1, param)


# -- 3. array headers ---------------------------------------------------------------------

@dataclass(frozen=True)
class _Header:
    shape: tuple
    fortran_order: bool
    dtype: np.dtype
    length: int  # bytes of the member before the array's data


def _array_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> _Header:
    """The `.npy` header of a member, from at most MAX_HEADER_BYTES of it."""
    with archive.open(info) as stream:
        start = stream.read(MAX_HEADER_BYTES)
    buffer = io.BytesIO(start)
    try:
        version = npy_format.read_magic(buffer)
        read = {(1, 0): npy_format.read_array_header_1_0,
                (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f".npy format version {version[0]}.{version[1]}; "
                             "versions 1.0 and 2.0 are read")
        shape, fortran_order, dtype = read(buffer, max_header_size=MAX_HEADER_BYTES)
    except (ValueError, SyntaxError, RecursionError, TypeError, struct.error) as exc:
        # ValueError: numpy's words for a bad magic string, a header that is too long,
        # cut short, or not a dict of shape, order and dtype.
        raise _Refused(f"{what} is not a readable .npy array ({_short(str(exc), 160)})") \
            from None
    return _Header(tuple(shape), bool(fortran_order), dtype, buffer.tell())


def _check_weight_header(key: str, header: _Header, shape: tuple[int, ...]) -> None:
    if header.shape != shape:
        raise _Refused(f"weight {key} has shape {_short(repr(header.shape))}, the spec "
                       f"needs {shape}")
    dtype = header.dtype
    if dtype.kind != "f" or dtype.itemsize > MAX_WEIGHT_ITEMSIZE or dtype.fields is not None:
        raise _Refused(f"weight {key} must hold finite floating-point numbers (float16, "
                       f"float32 or float64), got dtype {_short(str(dtype))}")


# -- 4. data, decompressed with a cap ------------------------------------------------------

def _read_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: _Header,
               size: int, limit: int, what: str) -> bytes:
    """Exactly `size` bytes of data after the header: never more is decompressed than
    `size` + 1 (to see that nothing follows), whatever the member declares."""
    if header.length + size > limit:
        raise _Refused(f"{what} would take {header.length + size:,} bytes, more than "
                       f"allowed ({limit:,})")
    with archive.open(info) as stream:
        stream.read(header.length)
        data = stream.read(size + 1)
    if len(data) != size:
        shortfall = "fewer" if len(data) < size else "more"
        raise _Refused(f"{what} holds {shortfall} bytes than its header says "
                       f"({size:,}): a damaged or altered file")
    return data


def _read_weight(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
                 header: _Header) -> np.ndarray:
    size = math.prod(header.shape) * header.dtype.itemsize
    data = _read_data(archive, info, header, size, size + MAX_HEADER_BYTES, f"weight {key}")
    order = "F" if header.fortran_order else "C"
    values = np.frombuffer(data, header.dtype).reshape(header.shape, order=order)
    # In the network's dtype: a float64 of 1e300 is finite, its float32 is not.
    with np.errstate(over="ignore", invalid="ignore"):
        weights = values.astype(DTYPE)
    if not np.isfinite(weights).all():
        raise _Refused(f"weight {key} must hold finite floating-point numbers, but holds "
                       "NaN, infinity or values too large for float32 (a model whose "
                       "training diverged? save it from an earlier epoch)")
    return weights


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."

