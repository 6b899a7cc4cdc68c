"""MNIST data: IDX parsing, finding the four files, verifying and downloading them.

Only numpy and the standard library are used, so the loader works wherever the
engine does. Loading is read-only: a folder that already holds the files is
never written to (it may be a read-only shared copy).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import math
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
PathLike = str | os.PathLike[str]

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_SIZE = 1 << 20

# IDX type codes (third magic byte) -> element type; IDX data is big-endian.
IDX_DTYPES: Mapping[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_IDX_DIMS = 4

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# Published MD5 of the *decompressed* files. The decompressed content is what is
# checked because gzip streams of the same data differ between mirrors.
# Decompressed sizes: 47040016, 60008, 7840016 and 10008 bytes.
# Looked up at call time, so tests may monkeypatch it with their own fakes.
MNIST_MD5: dict[str, str] = {
    TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
    TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
    TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
    TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
}

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

DATA_DIR_ENV = "CNN_LIVE_DATA_DIR"
MIRRORS_ENV = "CNN_LIVE_MNIST_MIRRORS"
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class DataError(ValueError):
    """A data file is missing, unreadable or malformed."""


class MnistNotFound(DataError):
    """The MNIST files are not in the data directory and could not be fetched."""

    def __init__(self, message: str, directory: Path, missing: Sequence[str]):
        super().__init__(message)
        self.directory = directory
        self.missing = tuple(missing)


class DownloadError(DataError):
    """Every mirror failed for a file; the message lists each failure."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays with == is ambiguous
class Mnist:
    """The four MNIST arrays and the folder they were read from."""

    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) uint8
    test_images: np.ndarray  # (M, 28, 28) uint8
    test_labels: np.ndarray  # (M,) uint8
    directory: Path


# --- IDX files ---------------------------------------------------------------


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, as a native-endian C-contiguous array."""
    return parse_idx(read_decompressed(path), source=str(path))


def read_decompressed(path: PathLike) -> bytes:
    """Return the file's bytes, decompressed if they start with the gzip magic."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip stream: {exc}") from exc


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes; `source` names the file in error messages."""
    dtype, shape = _parse_idx_header(data, source)
    header_size = 4 + 4 * len(shape)
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header_size
    if found < expected:
        raise DataError(f"{source}: truncated: expected {expected} bytes of data, found {found}")
    if found > expected:
        raise DataError(
            f"{source}: too long: expected {expected} bytes of data, found {found} "
            f"({found - expected} trailing bytes)"
        )
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header_size)
    # astype copies: the result is writable, C-contiguous and in native byte order.
    return array.reshape(shape).astype(dtype.newbyteorder("="), order="C")


def idx_bytes(array: np.ndarray) -> bytes:
    """An array as an IDX file's bytes (the inverse of parse_idx): big-endian, with
    the magic number of its element type and its shape."""
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    array = np.asarray(array)
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or not 1 <= array.ndim <= MAX_IDX_DIMS:
        raise DataError(f"an IDX file cannot hold a {array.ndim}-dimensional {array.dtype} array")
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(array, IDX_DTYPES[code]).tobytes()


def _parse_idx_header(data: bytes, source: str) -> tuple[np.dtype, tuple[int, ...]]:
    """Validate the magic number and return (element dtype, shape)."""
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{source}: bad magic number 0x{data[:4].hex()}: "
            "an IDX file starts with two zero bytes (is this an IDX file?)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{source}: unknown IDX data type code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise DataError(f"{source}: bad number of dimensions {ndim}: expected 1 to {MAX_IDX_DIMS}")
    if len(data) < 4 + 4 * ndim:
        raise DataError(
            f"{source}: truncated header: {ndim} dimensions need {4 + 4 * ndim} bytes, "
            f"found {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], shape


# --- Locating the files ----------------------------------------------------------


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """The data folder: the argument, else $CNN_LIVE_DATA_DIR, else the user cache."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return user_cache_dir()


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/cnn-live/mnist, defaulting to ~/.cache/cnn-live/mnist."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore a relative XDG_CACHE_HOME.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "cnn-live" / "mnist"


def locate_mnist_files(directory: PathLike) -> dict[str, Path]:
    """Map each MNIST name present in `directory` (raw or .gz) to its path."""
    found = {}
    for name in MNIST_FILES:
        # Raw first: it needs no decompression.
        for candidate in (Path(directory) / name, Path(directory) / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
    return found


def missing_mnist_files(directory: PathLike) -> list[str]:
    """The MNIST names found neither raw nor as .gz in `directory`."""
    found = locate_mnist_files(directory)
    return [name for name in MNIST_FILES if name not in found]


def find_mnist(directory: PathLike) -> dict[str, Path] | None:
    """Paths of all four MNIST files in `directory`, or None if any is missing."""
    found = locate_mnist_files(directory)
    return found if len(found) == len(MNIST_FILES) else None


# --- Loading -----------------------------------------------------------------------


def load_mnist(
    data_dir: PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Mnist:
    """Load MNIST from the data folder, downloading missing files if allowed.

    `mirrors=None` means `default_mirrors()`. Raises MnistNotFound if files are
    missing and cannot be downloaded, DataError if a file is malformed.
    """
    directory = resolve_data_dir(data_dir)
    files = find_mnist(directory)
    if files is None:
        files = _download_for_load(directory, download, mirrors, progress)
    arrays = {name: read_idx(path) for name, path in files.items()}
    _check_split(arrays, files, TRAIN_IMAGES, TRAIN_LABELS)
    _check_split(arrays, files, TEST_IMAGES, TEST_LABELS)
    return Mnist(
        train_images=arrays[TRAIN_IMAGES],
        train_labels=arrays[TRAIN_LABELS],
        test_images=arrays[TEST_IMAGES],
        test_labels=arrays[TEST_LABELS],
        directory=directory,
    )


def _download_for_load(
    directory: Path, download: bool, mirrors: Sequence[str] | None, progress: Progress | None
) -> dict[str, Path]:
    """Fetch the missing files for load_mnist, or raise MnistNotFound."""
    missing = missing_mnist_files(directory)
    if not download:
        raise _not_found(directory, missing, reason="downloading is disabled")
    try:
        download_mnist(directory, mirrors, progress=progress)
    except DownloadError as exc:
        raise _not_found(directory, missing, reason=f"the download failed: {exc}") from exc
    files = find_mnist(directory)
    if files is None:  # only if something removed files behind our back
        raise _not_found(directory, missing_mnist_files(directory), reason="files vanished")
    return files


def _not_found(directory: Path, missing: Sequence[str], reason: str) -> MnistNotFound:
    names = ", ".join(f"{name}[.gz]" for name in missing)
    message = (
        f"MNIST not found in {directory}: missing {names} ({reason}). "
        f"To fix: pass --data-dir or set {DATA_DIR_ENV} to a folder holding the four "
        "MNIST files (raw or .gz), or run `cnn-live download` when online."
    )
    return MnistNotFound(message, directory, missing)


def _check_split(
    arrays: Mapping[str, np.ndarray], files: Mapping[str, Path], images_name: str, labels_name: str
) -> None:
    """Check one images/labels pair: dtype, 28x28 images, equal counts, labels 0..9."""
    images, labels = arrays[images_name], arrays[labels_name]
    images_path, labels_path = files[images_name], files[labels_name]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), "
            f"found {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected uint8 labels of shape (N,), found {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{labels_path}: label {int(labels.max())} out of range 0..{NUM_CLASSES - 1}"
        )


# --- Verifying and downloading --------------------------------------------------------


def default_mirrors() -> tuple[str, ...]:
    """Mirror base URLs: $CNN_LIVE_MNIST_MIRRORS (comma-separated) or DEFAULT_MIRRORS."""
    from_env = os.environ.get(MIRRORS_ENV, "")
    mirrors = tuple(url.strip() for url in from_env.split(",") if url.strip())
    return mirrors or DEFAULT_MIRRORS


def content_md5(path: PathLike) -> str:
    """MD5 hex digest of the file's content, decompressed first if it is gzip."""
    digest = hashlib.md5()
    try:
        opener = gzip.open if is_gzip(path) else open
        with opener(path, "rb") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    return digest.hexdigest()


def is_gzip(path: PathLike) -> bool:
    """Whether the file starts with the gzip magic bytes."""
    with open(path, "rb") as stream:
        return stream.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def check_mnist_file(path: PathLike, name: str) -> None:
    """Raise DataError unless the file's decompressed content has the MD5 of `name`."""
    problem = _checksum_problem(path, name)
    if problem:
        raise DataError(f"{path}: {problem}")


def _checksum_problem(path: PathLike, name: str) -> str | None:
    """Why the file's decompressed MD5 is not the one published for `name`, or None."""
    expected = MNIST_MD5[name]
    actual = content_md5(path)
    if actual == expected:
        return None
    return f"checksum mismatch for {name}: MD5 {actual}, expected {expected}"


def download_mnist(
    directory: PathLike,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30,
    progress: Progress | None = None,
) -> list[Path]:
    """Download each missing MNIST file as NAME.gz into `directory`; return the new paths.

    `mirrors=None` means `default_mirrors()`. Raises DownloadError when every
    mirror fails for a file.
    """
    directory = Path(directory)
    mirrors = default_mirrors() if mirrors is None else tuple(mirrors)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    return [
        _download_file(name, directory, mirrors, timeout, progress)
        for name in missing_mnist_files(directory)
    ]


# What a failing mirror can raise: URLError/HTTPError/timeouts are OSError,
# ValueError covers malformed URLs and our own DataError (bad checksum, not gzip).
_MIRROR_FAILURES = (OSError, ValueError, http.client.HTTPException)


def _download_file(
    name: str, directory: Path, mirrors: Sequence[str], timeout: float, progress: Progress | None
) -> Path:
    """Try each mirror in turn for one file; raise DownloadError if all fail."""
    target = directory / f"{name}.gz"
    failures = []
    for base in mirrors:
        url = mirror_url(base, name)
        _report(progress, f"downloading {url}")
        try:
            _fetch_verified(url, name, target, timeout)
        except _MIRROR_FAILURES as exc:
            failures.append(f"{url}: {_describe(exc)}")
            _report(progress, f"failed: {failures[-1]}", level=logging.WARNING)
            continue
        _report(progress, f"verified {target}")
        return target
    listing = "".join(f"\n  {failure}" for failure in failures) or " (no mirrors given)"
    raise DownloadError(f"could not download {name}.gz from any mirror:{listing}")


def mirror_url(base: str, name: str) -> str:
    """URL of NAME.gz under a mirror base URL (with or without trailing slash)."""
    return f"{base.rstrip('/')}/{name}.gz"


def _fetch_verified(url: str, name: str, target: Path, timeout: float) -> None:
    """Download `url` to a temp file beside `target`, verify it, then move it into place."""
    # Same folder as the target so os.replace is an atomic rename; a unique name
    # so concurrent downloads never clobber each other's partial files.
    fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, CHUNK_SIZE)
        # Messages name the URL (added by the caller), not the temp file.
        if not is_gzip(temp):
            raise DataError("not a gzip file")
        problem = _checksum_problem(temp, name)
        if problem:
            raise DataError(problem)
        os.chmod(temp, 0o644)  # mkstemp makes it private; data is for every user (Docker)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _describe(exc: BaseException) -> str:
    """A one-line reason for a mirror failure."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):  # wraps the real cause, e.g. refused
        return f"cannot connect: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, DataError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _report(progress: Progress | None, message: str, level: int = logging.INFO) -> None:
    """Send a human message to the progress callback, else to the log."""
    if progress is not None:
        progress(message)
    else:
        log.log(level, message)
