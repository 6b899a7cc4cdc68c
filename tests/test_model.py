"""Tests for cnn.model: spec validation, .npz files (safe, strict, atomic), copies,
feature maps and the float32 dtype."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

from cnn.model import Model, ModelFileError, SpecError
from cnn.optim import SGD

SPEC = {"input": [1, 8, 8],
        "layers": [{"type": "conv", "filters": 4, "kernel": 3, "padding": 1},
                   {"type": "relu"}, {"type": "maxpool", "size": 2},
                   {"type": "flatten"}, {"type": "dense", "units": 10}]}


def flat(*layers, **spec):
    """A spec on 8x8 images that ends in flatten and dense, with `layers` before."""
    return {"input": [1, 8, 8],
            "layers": [*layers, {"type": "flatten"}, {"type": "dense", "units": 10}], **spec}


@pytest.fixture
def images():
    return np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)


@pytest.fixture
def labels():
    return np.array([0, 1, 2, 3, 4, 5])


def saved_arrays(model: Model, **changes) -> dict:
    """The arrays `save` writes, with some replaced (None removes one)."""
    arrays = {**model.state(), "spec": np.array(json.dumps(model.spec)),
              "metadata": np.array("{}")}
    arrays.update(changes)
    return {name: value for name, value in arrays.items() if value is not None}


def npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# --- spec validation ----------------------------------------------------------------------


@pytest.mark.parametrize("spec, message", [
    (flat({"type": "dropout"}), "layer 0: 'type' must be one of ['conv', 'dense'"),
    (flat({"kernel": 3}), "layer 0: 'type' must be one of"),
    (flat({"type": "conv", "kernel": 3}), "layer 0 (conv): 'filters' is required"),
    (flat({"type": "dense"}), "layer 0 (dense): 'units' is required"),
    ({"layers": [{"type": "dense", "units": 10}]},
     "layer 0 (dense): needs a flat input; add {\"type\": \"flatten\"} before it"),
    ({"layers": [{"type": "flatten"}, {"type": "conv", "filters": 2},
                 {"type": "dense", "units": 10}]},
     "layer 1 (conv): needs an image input, but gets a flat vector; put it before flatten"),
    ({"layers": [{"type": "flatten"}, {"type": "maxpool"}, {"type": "dense", "units": 10}]},
     "layer 1 (maxpool): needs an image input"),
    (flat({"type": "conv", "filters": 2, "kernel": 9}),
     "layer 0 (conv): kernel 9 is larger than its padded input 8x8"),
    (flat({"type": "maxpool", "size": 9}), "layer 0 (maxpool): size 9 is larger than its input 8x8"),
    ({"input": [1, 8, 8], "layers": [{"type": "conv", "filters": 2}]},
     "the last layer must give a flat vector of class scores (end with flatten and dense), "
     "got shape 2x6x6"),
    (flat(loss="hinge"), "unknown loss 'hinge'; choose one of ['softmax_cross_entropy'"),
    (flat(init="zeros"), "unknown init 'zeros'"),
    (flat(optimizer="adam"), "unknown spec keys: ['optimizer']"),
    (flat({"type": "conv", "filters": 2, "activation": "relu"}),
     "layer 0 (conv): unknown keys ['activation']"),
    (flat({"type": "conv", "filters": True}),
     "layer 0 (conv): 'filters' must be an integer from 1 to 4096, got True"),
    (flat({"type": "conv", "filters": 2.0}), "'filters' must be an integer from 1 to 4096, got 2.0"),
    (flat({"type": "conv", "filters": -3}), "'filters' must be an integer from 1 to 4096, got -3"),
    (flat({"type": "conv", "filters": 2, "padding": -1}),
     "'padding' must be an integer from 0 to 64, got -1"),
    (flat({"type": "conv", "filters": 2, "stride": 0}), "'stride' must be an integer from 1"),
    ({"input": [1, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]},
     "'input' must be [channels, height, width]"),
    ({"input": [1, 28, 0], "layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]},
     "input: 'size' must be an integer from 1"),
    ({"layers": []}, "'layers' must be a non-empty list"),
    ("conv", "a spec is a JSON object, got str"),
])
def test_a_bad_spec_is_refused_with_a_message_that_names_the_problem(spec, message):
    with pytest.raises(SpecError) as caught:
        Model(spec)
    assert message in str(caught.value)


def test_a_spec_gets_its_defaults_filled_in():
    model = Model({"layers": [{"type": "conv", "filters": 2}, {"type": "flatten"},
                              {"type": "dense", "units": 10}]})
    assert model.spec["input"] == [1, 28, 28]
    assert model.spec["loss"] == "softmax_cross_entropy" and model.spec["init"] == "he"
    assert model.spec["layers"][0] == {"type": "conv", "filters": 2, "kernel": 3, "stride": 1,
                                       "padding": 0}


# --- save and load ------------------------------------------------------------------------


def test_save_and_load_give_identical_predictions_and_keep_the_metadata(tmp_path, images):
    model = Model(SPEC, seed=4)
    metadata = {"preset": "test", "history": [{"epoch": 1, "test_accuracy": 0.5}],
                "note": "ünïcode"}
    path = model.save(tmp_path / "sub" / "model.npz", metadata=metadata)
    assert path == tmp_path / "sub" / "model.npz"
    loaded, loaded_metadata = Model.load_with_metadata(path)
    assert loaded.spec == model.spec
    assert loaded_metadata == metadata
    np.testing.assert_array_equal(loaded.forward(images), model.forward(images))
    for name, value in model.state().items():
        np.testing.assert_array_equal(loaded.state()[name], value)
    from_bytes = Model.load(path.read_bytes())
    np.testing.assert_array_equal(from_bytes.forward(images), model.forward(images))


def test_a_model_saved_without_metadata_loads_with_an_empty_dict(tmp_path):
    path = Model(SPEC).save(tmp_path / "model.npz")
    assert Model.load_with_metadata(path)[1] == {}


UNPICKLED: list = []


def _record_unpickling():
    UNPICKLED.append("unpickled")
    return "unpickled"


class Booby:
    """Unpickling one of these calls _record_unpickling."""

    def __reduce__(self):
        return _record_unpickling, ()


def test_load_never_unpickles_an_object_array(tmp_path):
    arrays = saved_arrays(Model(SPEC), trap=np.array([Booby()], dtype=object))
    path = tmp_path / "pickled.npz"
    path.write_bytes(npz_bytes(arrays))
    with pytest.raises(ModelFileError, match="pickled.npz: not a model file saved by cnn-live"):
        Model.load(path)
    with pytest.raises(ModelFileError, match="uploaded model"):
        Model.load(path.read_bytes())
    assert UNPICKLED == []


@pytest.mark.parametrize("change, message", [
    ({"0.weight": None}, "weights do not fit the spec: missing ['0.weight']"),
    ({"4.bias": None}, "missing ['4.bias']"),
    ({"0.weight": np.zeros((4, 1, 5, 5), np.float32)},
     "weight 0.weight has shape (4, 1, 5, 5), the spec needs (4, 1, 3, 3)"),
    ({"4.weight": np.zeros((64, 9), np.float32)}, "weight 4.weight has shape (64, 9)"),
    ({"7.weight": np.zeros(3, np.float32)}, "unexpected ['7.weight']"),
    ({"4.bias": np.full(10, np.nan, np.float32)},
     "weight 4.bias must hold finite floating-point numbers"),
    ({"0.bias": np.array([0, np.inf, 0, 0], np.float32)}, "0.bias must hold finite"),
    ({"4.bias": np.zeros(10, np.int32)}, "4.bias must hold finite floating-point numbers"),
    ({"spec": None}, "not a model file saved by cnn-live (no spec inside)"),
    ({"spec": np.array(json.dumps({"layers": [{"type": "dense", "units": 10}]}))},
     "layer 0 (dense): needs a flat input"),
], ids=["missing weight", "missing bias", "conv shape", "dense shape", "extra array",
        "nan", "inf", "integer weights", "no spec", "spec that cannot be built"])
def test_a_file_whose_arrays_do_not_fit_its_spec_is_refused(tmp_path, change, message):
    path = tmp_path / "model.npz"
    path.write_bytes(npz_bytes(saved_arrays(Model(SPEC), **change)))
    with pytest.raises(ModelFileError) as caught:
        Model.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_weights_saved_as_float64_load_as_float32(tmp_path, images):
    model = Model(SPEC, seed=2)
    wide = {name: value.astype(np.float64) for name, value in model.state().items()}
    path = tmp_path / "wide.npz"
    path.write_bytes(npz_bytes(saved_arrays(model, **wide)))
    loaded = Model.load(path)
    assert all(p.dtype == np.float32 for p in loaded.parameters())
    np.testing.assert_array_equal(loaded.forward(images), model.forward(images))


def _npy_file(path):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 3), np.float32))
    return buffer.getvalue()


def _a_zip_without_arrays(path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return buffer.getvalue()


@pytest.mark.parametrize("make_content", [
    lambda path: b"just some text, not a model\n",
    lambda path: b"",
    _npy_file,
    lambda path: np.random.default_rng(1).bytes(4096),
    lambda path: Model(SPEC).save(path).read_bytes()[:-30],
    lambda path: Model(SPEC).save(path).read_bytes()[:200],
    _a_zip_without_arrays,
], ids=["text", "empty", "npy", "random bytes", "truncated end", "truncated start",
        "zip of text"])
def test_a_file_that_is_not_a_model_is_refused_with_model_file_error(tmp_path, make_content):
    path = tmp_path / "model.npz"
    content = make_content(path)
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        Model.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "not a model file saved by cnn-live" in str(caught.value)


def test_a_missing_file_is_a_model_file_error_naming_it(tmp_path):
    with pytest.raises(ModelFileError, match="nowhere.npz: no such file"):
        Model.load(tmp_path / "nowhere.npz")


def test_save_is_atomic_a_failed_write_leaves_the_earlier_file_intact(tmp_path, monkeypatch,
                                                                       images):
    earlier = Model(SPEC, seed=1)
    path = earlier.save(tmp_path / "model.npz", metadata={"version": 1})

    def failing_savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="No space left"):
        Model(SPEC, seed=2).save(path, metadata={"version": 2})
    monkeypatch.undo()

    loaded, metadata = Model.load_with_metadata(path)
    assert metadata == {"version": 1}
    np.testing.assert_array_equal(loaded.forward(images), earlier.forward(images))
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_save_replaces_an_earlier_file(tmp_path, images):
    path = Model(SPEC, seed=1).save(tmp_path / "model.npz")
    newer = Model(SPEC, seed=2)
    newer.save(path)
    np.testing.assert_array_equal(Model.load(path).forward(images), newer.forward(images))
    assert os.listdir(tmp_path) == ["model.npz"]


# --- copies, feature maps, dtype -------------------------------------------------------------


def test_a_copy_is_independent_of_its_original(images, labels):
    original = Model(SPEC, seed=3)
    before = original.state()
    twin = original.copy()
    np.testing.assert_array_equal(twin.forward(images), original.forward(images))
    twin.train_step(images, labels, SGD(learning_rate=0.5))
    twin.parameters()[0][...] = 7.0
    for name, value in original.state().items():
        np.testing.assert_array_equal(value, before[name])
    assert not np.array_equal(twin.forward(images), original.forward(images))


def test_a_copy_keeps_the_spec(images):
    original = Model(SPEC, seed=3)
    assert original.copy().spec == original.spec


def test_feature_maps_give_one_entry_per_layer_with_images_as_nchw(images):
    model = Model(SPEC, seed=0)
    maps = model.feature_maps(images)
    assert [name for name, _ in maps] == ["0.conv", "1.relu", "2.maxpool", "3.flatten", "4.dense"]
    assert [m.shape for _, m in maps] == [(6, 4, 8, 8), (6, 4, 8, 8), (6, 4, 4, 4), (6, 64),
                                          (6, 10)]
    np.testing.assert_allclose(maps[-1][1], model.forward(images), rtol=1e-5, atol=1e-6)
    assert (maps[1][1] >= 0).all()  # after the ReLU
    np.testing.assert_allclose(maps[3][1], maps[2][1].reshape(6, -1))  # PyTorch's order


def test_float32_is_kept_throughout(images, labels):
    model = Model(SPEC, seed=0)
    assert model.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert model.forward(images.astype(np.float64)).dtype == np.float32
    model.train_step(images.astype(np.float64), labels, SGD(learning_rate=0.1, momentum=0.9))
    assert all(g.dtype == np.float32 for g in model.gradients())
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert all(m.dtype == np.float32 for _, m in model.feature_maps(images))
    assert model.predict_proba(images).dtype == np.float32


def test_inputs_of_the_wrong_shape_are_refused_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, 8, 8\)"):
        Model(SPEC).forward(np.zeros((2, 1, 28, 28), np.float32))
