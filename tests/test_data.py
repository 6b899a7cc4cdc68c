"""Tests for cnn.data: IDX parsing, MNIST loading, and downloading from a local server."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from http_folder import serve_folder

from cnn import data
from cnn.data import (
    MNIST_FILES,
    DataError,
    DownloadError,
    MnistNotFound,
    download_mnist,
    find_mnist,
    load_mnist,
    read_idx,
    resolve_data_dir,
)

# Read before the autouse fixture clears the variable for every test.
SHARED_MNIST = Path(
    os.environ.get("CNN_LIVE_DATA_DIR")
    or Path(__file__).resolve().parents[2] / "shared/data/mnist"
)
needs_shared_mnist = pytest.mark.skipif(
    find_mnist(SHARED_MNIST) is None, reason=f"real MNIST not found in {SHARED_MNIST}"
)


def unused_local_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """No test reads the caller's data settings, writes to the real cache or goes online."""
    monkeypatch.delenv("CNN_LIVE_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # Any accidental use of the default mirrors hits a closed local port.
    monkeypatch.setenv("CNN_LIVE_MNIST_MIRRORS", f"http://127.0.0.1:{unused_local_port()}/")


# --- helpers building IDX and fake MNIST files ------------------------------------


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """IDX encoding of `array`: magic, big-endian dims, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_file(path: Path, content: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def fake_mnist_contents(train: int = 3, test: int = 2) -> dict[str, bytes]:
    """Raw IDX bytes of tiny MNIST-like files, keyed by standard name."""
    rng = np.random.default_rng(0)

    def images(n: int) -> bytes:
        return idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))

    def labels(n: int) -> bytes:
        return idx_bytes(rng.integers(0, 10, n, dtype=np.uint8))

    return {
        "train-images-idx3-ubyte": images(train),
        "train-labels-idx1-ubyte": labels(train),
        "t10k-images-idx3-ubyte": images(test),
        "t10k-labels-idx1-ubyte": labels(test),
    }


def write_mnist(directory: Path, contents: dict[str, bytes], compress: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        write_file(directory / (f"{name}.gz" if compress else name), content, compress)


def use_checksums_of(monkeypatch, contents: dict[str, bytes]) -> None:
    """Make the module's checksum table accept exactly these fake files."""
    table = {name: hashlib.md5(content).hexdigest() for name, content in contents.items()}
    monkeypatch.setattr(data, "MNIST_MD5", table)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


# --- read_idx ----------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_returns_the_array_that_was_written(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_file(tmp_path / "a.idx", idx_bytes(array), compress)

    result = read_idx(path)

    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.uint8
    assert result.flags.c_contiguous and result.flags.writeable


def test_read_idx_detects_gzip_by_magic_bytes_not_suffix(tmp_path):
    array = np.array([1, 2, 3], dtype=np.uint8)
    path = write_file(tmp_path / "no-suffix", idx_bytes(array), compress=True)

    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    ("dtype", "code"),
    [("u1", 0x08), ("i1", 0x09), ("i2", 0x0B), ("i4", 0x0C), ("f4", 0x0D), ("f8", 0x0E)],
)
def test_read_idx_decodes_every_standard_type_into_native_byte_order(tmp_path, dtype, code):
    array = np.array([[0, 1, -1 if dtype != "u1" else 255], [7, 100, 3]], dtype=dtype)
    path = write_file(tmp_path / "typed.idx", idx_bytes(array, code))

    result = read_idx(path)

    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative


def test_read_idx_rejects_a_nonzero_magic_prefix(tmp_path):
    content = b"\x01\x02" + idx_bytes(np.zeros(4, np.uint8))[2:]
    path = write_file(tmp_path / "bad-magic.idx", content)

    with pytest.raises(DataError, match=r"bad-magic\.idx: bad magic number"):
        read_idx(path)


def test_read_idx_rejects_an_unknown_type_code(tmp_path):
    content = bytes([0, 0, 0x07, 1]) + struct.pack(">I", 4) + bytes(4)
    path = write_file(tmp_path / "bad-type.idx", content)

    with pytest.raises(DataError, match=r"bad-type\.idx: unknown IDX data type code 0x07"):
        read_idx(path)


@pytest.mark.parametrize("ndim", [0, 5])
def test_read_idx_rejects_dimension_counts_outside_one_to_four(tmp_path, ndim):
    content = bytes([0, 0, 0x08, ndim]) + struct.pack(f">{ndim}I", *[1] * ndim) + b"\x00"
    path = write_file(tmp_path / "dims.idx", content)

    with pytest.raises(DataError, match=rf"dims\.idx: bad number of dimensions {ndim}"):
        read_idx(path)


def test_read_idx_rejects_dimensions_that_do_not_match_the_body(tmp_path):
    # Header claims 3x3 but the body holds 2x2 = 4 bytes.
    content = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 3, 3) + bytes(4)
    path = write_file(tmp_path / "mismatch.idx", content)

    with pytest.raises(DataError, match=r"mismatch\.idx: truncated: expected 9 bytes of data, found 4"):
        read_idx(path)


def test_read_idx_rejects_a_header_cut_short(tmp_path):
    content = bytes([0, 0, 0x08, 3]) + struct.pack(">I", 10)
    path = write_file(tmp_path / "short-header.idx", content)

    with pytest.raises(DataError, match=r"short-header\.idx: truncated header"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_rejects_a_truncated_body(tmp_path, compress):
    content = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100]
    path = write_file(tmp_path / "cut-idx3-ubyte.gz", content, compress)

    with pytest.raises(DataError) as error:
        read_idx(path)

    assert "cut-idx3-ubyte.gz: truncated: expected 7840 bytes of data, found 7740" in str(error.value)


def test_read_idx_rejects_an_over_long_body(tmp_path):
    content = idx_bytes(np.zeros(5, np.uint8)) + b"extra"
    path = write_file(tmp_path / "long.idx", content)

    with pytest.raises(DataError, match=r"long\.idx: too long: expected 5 bytes of data, found 10"):
        read_idx(path)


def test_read_idx_reports_a_corrupt_gzip_stream_with_the_file_name(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8) % 7))
    path = write_file(tmp_path / "broken.gz", packed[: len(packed) // 2])

    with pytest.raises(DataError, match=r"broken\.gz: corrupt gzip stream"):
        read_idx(path)


def test_read_idx_reports_a_missing_file_as_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="absent.idx"):
        read_idx(tmp_path / "absent.idx")


# --- the real MNIST --------------------------------------------------------------------


@needs_shared_mnist
def test_real_mnist_loads_with_standard_shapes_and_labels_without_writing_to_its_folder():
    before = listing(SHARED_MNIST)

    mnist = load_mnist(SHARED_MNIST, download=False)

    assert listing(SHARED_MNIST) == before
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.test_labels.shape == (10000,)
    for array in (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels):
        assert array.dtype == np.uint8
    assert set(np.unique(mnist.train_labels)) == set(range(10))
    assert set(np.unique(mnist.test_labels)) == set(range(10))
    assert mnist.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.test_labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert mnist.directory == SHARED_MNIST


@needs_shared_mnist
def test_real_mnist_files_match_the_published_checksum_table():
    for name, path in find_mnist(SHARED_MNIST).items():
        data.check_mnist_file(path, name)  # raises DataError on a mismatch
        assert data.content_md5(path) == data.MNIST_MD5[name]


# --- finding and loading ---------------------------------------------------------------------


def test_resolve_data_dir_prefers_argument_then_env_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(None) == tmp_path / "cache" / "cnn-live" / "mnist"

    monkeypatch.setenv("CNN_LIVE_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir(None) == tmp_path / "from-env"

    assert resolve_data_dir(tmp_path / "given") == tmp_path / "given"
    assert resolve_data_dir(str(tmp_path / "given")) == tmp_path / "given"


def test_resolve_data_dir_falls_back_to_home_cache_without_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))

    assert resolve_data_dir(None) == tmp_path / ".cache" / "cnn-live" / "mnist"


def test_default_mirrors_can_be_overridden_by_comma_separated_env(monkeypatch):
    monkeypatch.setenv("CNN_LIVE_MNIST_MIRRORS", " http://a.test/x/ , http://b.test/y ,")
    assert data.default_mirrors() == ("http://a.test/x/", "http://b.test/y")

    monkeypatch.delenv("CNN_LIVE_MNIST_MIRRORS")
    assert data.default_mirrors() == data.DEFAULT_MIRRORS


def test_missing_data_without_download_raises_mnist_not_found_naming_folder_files_and_fix(tmp_path):
    directory = tmp_path / "empty"
    directory.mkdir()
    write_file(directory / "train-labels-idx1-ubyte.gz", b"present", compress=True)

    with pytest.raises(MnistNotFound) as error:
        load_mnist(directory, download=False)

    message = str(error.value)
    assert str(directory) in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "train-labels-idx1-ubyte" not in message  # it is present
    assert "--data-dir" in message and "CNN_LIVE_DATA_DIR" in message
    assert "cnn-live download" in message
    assert error.value.missing == (
        "train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
    )
    assert listing(directory) == ["train-labels-idx1-ubyte.gz"]


def test_load_mnist_reads_raw_uncompressed_files_too(tmp_path):
    contents = fake_mnist_contents(train=4, test=3)
    write_mnist(tmp_path, contents, compress=False)

    mnist = load_mnist(tmp_path, download=False)

    assert mnist.train_images.shape == (4, 28, 28)
    assert mnist.test_labels.shape == (3,)
    np.testing.assert_array_equal(mnist.train_images, read_idx(tmp_path / MNIST_FILES[0]))


def test_load_mnist_rejects_image_and_label_counts_that_differ(tmp_path):
    contents = fake_mnist_contents()
    contents["train-labels-idx1-ubyte"] = idx_bytes(np.zeros(5, np.uint8))
    write_mnist(tmp_path, contents)

    with pytest.raises(DataError, match=r"holds 3 images but .*train-labels.* holds 5 labels"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_rejects_labels_outside_zero_to_nine(tmp_path):
    contents = fake_mnist_contents()
    contents["t10k-labels-idx1-ubyte"] = idx_bytes(np.array([3, 10], np.uint8))
    write_mnist(tmp_path, contents)

    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*label 10 out of range"):
        load_mnist(tmp_path, download=False)


def test_load_mnist_rejects_images_that_are_not_28_by_28(tmp_path):
    contents = fake_mnist_contents()
    contents["t10k-images-idx3-ubyte"] = idx_bytes(np.zeros((2, 27, 28), np.uint8))
    write_mnist(tmp_path, contents)

    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*\(N, 28, 28\)"):
        load_mnist(tmp_path, download=False)


# --- downloading from a local HTTP server --------------------------------------------------


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (root folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as url:
        yield root, url


@pytest.fixture
def fake_mnist(monkeypatch):
    """Tiny MNIST-like contents whose MD5s the checksum table is patched to expect."""
    contents = fake_mnist_contents()
    use_checksums_of(monkeypatch, contents)
    return contents


def test_download_fetches_and_verifies_all_four_files_which_then_load(
    http_server, fake_mnist, tmp_path
):
    root, base = http_server
    write_mnist(root / "good", fake_mnist)
    target = tmp_path / "new" / "nested"
    messages = []

    downloaded = download_mnist(target, [base + "good/"], timeout=5, progress=messages.append)

    assert downloaded == [target / f"{name}.gz" for name in MNIST_FILES]
    assert listing(target) == sorted(f"{name}.gz" for name in MNIST_FILES)
    for name in MNIST_FILES:
        assert gzip.decompress((target / f"{name}.gz").read_bytes()) == fake_mnist[name]
        # readable by every user (a server in a container runs as another one)
        assert (target / f"{name}.gz").stat().st_mode & 0o444 == 0o444
    assert any("verified" in message for message in messages)
    mnist = load_mnist(target, download=False)
    assert mnist.train_images.shape == (3, 28, 28)
    assert mnist.test_images.shape == (2, 28, 28)


def test_load_mnist_downloads_missing_files_when_allowed(http_server, fake_mnist, tmp_path):
    root, base = http_server
    write_mnist(root / "good", fake_mnist)

    mnist = load_mnist(tmp_path / "cache", mirrors=[base + "good"])

    expected = np.frombuffer(fake_mnist["train-labels-idx1-ubyte"][8:], np.uint8)
    np.testing.assert_array_equal(mnist.train_labels, expected)
    assert mnist.directory == tmp_path / "cache"


def test_download_fetches_only_the_files_that_are_missing(http_server, fake_mnist, tmp_path):
    root, base = http_server
    write_mnist(root / "good", fake_mnist)
    target = tmp_path / "partial"
    write_mnist(target, {name: fake_mnist[name] for name in MNIST_FILES[:3]}, compress=False)

    downloaded = download_mnist(target, [base + "good/"], timeout=5)

    assert downloaded == [target / "t10k-labels-idx1-ubyte.gz"]


def test_download_falls_back_to_the_next_mirror_after_a_404(http_server, fake_mnist, tmp_path):
    root, base = http_server
    (root / "empty").mkdir()
    write_mnist(root / "good", fake_mnist)
    messages = []

    download_mnist(tmp_path / "out", [base + "empty/", base + "good/"], 5, messages.append)

    assert find_mnist(tmp_path / "out") is not None
    assert any("empty/" in message and "HTTP 404" in message for message in messages)


def test_download_falls_back_to_the_next_mirror_when_one_is_unreachable(
    http_server, fake_mnist, tmp_path
):
    root, base = http_server
    write_mnist(root / "good", fake_mnist)
    closed = f"http://127.0.0.1:{unused_local_port()}/mnist/"
    messages = []

    download_mnist(tmp_path / "out", [closed, base + "good/"], 5, messages.append)

    assert find_mnist(tmp_path / "out") is not None
    assert any(closed in message and "cannot connect" in message for message in messages)


def test_download_rejects_a_corrupted_file_by_checksum_and_leaves_nothing_behind(
    http_server, fake_mnist, tmp_path
):
    root, base = http_server
    corrupted = dict(fake_mnist)
    corrupted["train-images-idx3-ubyte"] = fake_mnist["t10k-images-idx3-ubyte"]
    write_mnist(root / "one", corrupted)
    write_mnist(root / "two", corrupted)
    target = tmp_path / "out"
    mirrors = [base + "one/", base + "two/"]

    with pytest.raises(DownloadError) as error:
        download_mnist(target, mirrors, timeout=5)

    message = str(error.value)
    assert "train-images-idx3-ubyte" in message
    for mirror in mirrors:
        assert f"{mirror}train-images-idx3-ubyte.gz: checksum mismatch" in message
    assert target.is_dir() and listing(target) == []


def test_download_rejects_a_mirror_serving_a_file_that_is_not_gzip(
    http_server, fake_mnist, tmp_path
):
    root, base = http_server
    write_mnist(root / "plain", fake_mnist, compress=False)
    for name, content in fake_mnist.items():  # right name, uncompressed content
        (root / "plain" / f"{name}.gz").write_bytes(content)
    target = tmp_path / "out"

    with pytest.raises(DownloadError, match=r"plain/train-images-idx3-ubyte\.gz: not a gzip file"):
        download_mnist(target, [base + "plain/"], timeout=5)

    assert listing(target) == []


def test_load_mnist_turns_a_failed_download_into_mnist_not_found_with_the_reasons(
    http_server, fake_mnist, tmp_path
):
    _, base = http_server

    with pytest.raises(MnistNotFound) as error:
        load_mnist(tmp_path / "out", mirrors=[base + "nowhere/"])

    message = str(error.value)
    assert "the download failed" in message and "HTTP 404" in message
    assert "cnn-live download" in message
    assert isinstance(error.value.__cause__, DownloadError)
