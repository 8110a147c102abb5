"""Face descriptor net: a ResNet-34-style embedding (dlib's face recognition model, face-api weights).

Architecture, re-stated from the tensor names and shapes of ``face_recognition_model``
(NHWC; ``conv`` = 2-D convolution with bias, ``affine`` = per-channel ``x * weights + biases``,
dlib's inference form of batch norm, stored under ``scale/``):

* input 150x150 RGB, normalised as ``(pixel - [122.782, 117.001, 104.298]) / 256`` with
  ``pixel`` in [0, 255] (dlib's ``input_rgb_image`` convention);
* stem ``conv32_down``: 7x7 conv, stride 2, no padding (150 -> 72) -> affine -> ReLU ->
  3x3 max-pool, stride 2, no padding (72 -> 35);
* residual blocks ``conv{32,64,128,256}_*`` (``conv1``: 3x3 conv -> affine -> ReLU; ``conv2``:
  3x3 conv -> affine; then ``ReLU(conv2 + skip)``):

  ======================  ========  =========  ===========
  blocks                  channels  stride     size after
  ======================  ========  =========  ===========
  conv32_1..3             32        1          35
  conv64_down, _1..3      64        2, 1, ...  17
  conv128_down, _1..2     128       2, 1, ...  8
  conv256_down, _1..2     256       2, 1, ...  4 (see below)
  conv256_down_out        256       2          2
  ======================  ========  =========  ===========

  In a ``*_down`` block the first conv has stride 2 and no padding, the skip is a 2x2 average
  pool (stride 2, no padding) of the block input, zero-padded along channels to the new width;
  where the two branches differ in size (8 -> 3 vs 4, 4 -> 1 vs 2) the smaller one is
  zero-padded at the bottom/right, as dlib's ``add_prev`` does. Other convs are 3x3 "same";
* head: global average pool -> ``fc`` [256, 128] without bias -> 128-D descriptor.

dlib's convention: two aligned faces whose descriptors are less than about 0.6 apart (Euclidean)
are the same person. The expected input is an aligned face chip (eyes level, face filling most
of the frame, like dlib's 150x150 chips or the UTKFace "aligned & cropped" images).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from restore_jax.faces import _layers as L
from restore_jax.faces.weights import load_face_api_weights

__all__ = ["FaceRecognitionNet", "RECOGNITION_MEAN_RGB", "RECOGNITION_SIZE"]

RECOGNITION_SIZE = 150
RECOGNITION_MEAN_RGB = (122.782, 117.001, 104.298)
_NAME = "FaceRecognitionNet"

# (block name, output channels, downsampling?)
_BLOCKS = (
    ("conv32_1", 32, False), ("conv32_2", 32, False), ("conv32_3", 32, False),
    ("conv64_down", 64, True), ("conv64_1", 64, False), ("conv64_2", 64, False), ("conv64_3", 64, False),
    ("conv128_down", 128, True), ("conv128_1", 128, False), ("conv128_2", 128, False),
    ("conv256_down", 256, True), ("conv256_1", 256, False), ("conv256_2", 256, False),
    ("conv256_down_out", 256, True),
)  # fmt: skip


def _conv_affine_shapes(prefix: str, k: int, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}/conv/filters": (k, k, cin, cout),
        f"{prefix}/conv/bias": (cout,),
        f"{prefix}/scale/weights": (cout,),
        f"{prefix}/scale/biases": (cout,),
    }


def _weight_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {
        "conv32_down/conv/filters": (7, 7, 3, 32),
        "conv32_down/conv/bias": (32,),
        "conv32_down/scale/weights": (32,),
        "conv32_down/scale/biases": (32,),
    }
    cin = 32
    for name, cout, _ in _BLOCKS:
        shapes.update(_conv_affine_shapes(f"{name}/conv1", 3, cin, cout))
        shapes.update(_conv_affine_shapes(f"{name}/conv2", 3, cout, cout))
        cin = cout
    shapes["fc"] = (256, 128)
    return shapes


class _ConvAffine(nnx.Module):
    """conv (with bias) -> per-channel affine."""

    def __init__(self, weights: Mapping[str, np.ndarray], prefix: str, k: int, cin: int, cout: int, *,
                 stride: int, padding: str):
        self.conv = L.Conv(
            L.take(weights, f"{prefix}/conv/filters", (k, k, cin, cout), _NAME),
            L.take(weights, f"{prefix}/conv/bias", (cout,), _NAME),
            stride=stride,
            padding=padding,
        )
        self.gamma = nnx.Param(L.take(weights, f"{prefix}/scale/weights", (cout,), _NAME))
        self.beta = nnx.Param(L.take(weights, f"{prefix}/scale/biases", (cout,), _NAME))

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.conv(x) * self.gamma[...] + self.beta[...]


def _pad_to(x: jnp.ndarray, h: int, w: int, c: int) -> jnp.ndarray:
    """Zero-pad ``x`` at the bottom / right / last channels to ``[B, h, w, c]``."""
    _, xh, xw, xc = x.shape
    return jnp.pad(x, ((0, 0), (0, h - xh), (0, w - xw), (0, c - xc)))


class _Residual(nnx.Module):
    def __init__(self, weights: Mapping[str, np.ndarray], name: str, cin: int, cout: int, down: bool):
        self.down = down
        self.conv1 = _ConvAffine(weights, f"{name}/conv1", 3, cin, cout,
                                 stride=2 if down else 1, padding="VALID" if down else "SAME")
        self.conv2 = _ConvAffine(weights, f"{name}/conv2", 3, cout, cout, stride=1, padding="SAME")

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        out = self.conv2(jax.nn.relu(self.conv1(x)))
        skip = L.avg_pool_valid(x, 2, 2) if self.down else x
        h, w = max(out.shape[1], skip.shape[1]), max(out.shape[2], skip.shape[2])
        c = max(out.shape[3], skip.shape[3])
        return jax.nn.relu(_pad_to(out, h, w, c) + _pad_to(skip, h, w, c))


class FaceRecognitionNet(nnx.Module):
    """150x150 RGB face chip -> 128-D identity descriptor (see the module docstring).

    ``__call__`` takes float RGB in ``[0, 1]``, shape ``[B, 150, 150, 3]``, and is jittable;
    :meth:`embed` takes any-size aligned crops (resized to 150x150) and runs a cached jit.
    """

    def __init__(self, weights: Mapping[str, np.ndarray]):
        self.stem = _ConvAffine(weights, "conv32_down", 7, 3, 32, stride=2, padding="VALID")
        blocks = []
        cin = 32
        for name, cout, down in _BLOCKS:
            blocks.append(_Residual(weights, name, cin, cout, down))
            cin = cout
        self.blocks = nnx.List(blocks)
        self.fc = nnx.Param(L.take(weights, "fc", (256, 128), _NAME))

    @staticmethod
    def weight_shapes() -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape table the net expects (matches ``face_recognition_model``)."""
        return _weight_shapes()

    @classmethod
    def from_face_api(cls, weights_dir: str | os.PathLike | None = None) -> "FaceRecognitionNet":
        """Load ``face_recognition_model`` (see :mod:`restore_jax.faces.weights` for the folder lookup)."""
        return cls(load_face_api_weights("face_recognition", weights_dir))

    @classmethod
    def random(cls, seed: int = 0) -> "FaceRecognitionNet":
        """Random weights of the right shapes (for tests and shape checks, not for use)."""
        return cls(L.random_weights(_weight_shapes(), seed))

    def features(self, x: jnp.ndarray) -> jnp.ndarray:
        """Stem output (after conv, affine, ReLU and max-pool): ``[B, 35, 35, 32]`` for 150x150 input."""
        x = (x * 255.0 - jnp.asarray(RECOGNITION_MEAN_RGB, jnp.float32)) / 256.0
        return L.max_pool(jax.nn.relu(self.stem(x)), 3, 2, "VALID")

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FaceRecognitionNet expects [B, H, W, 3] RGB in [0, 1], got shape {tuple(x.shape)}")
        h = self.features(x.astype(jnp.float32))
        for block in self.blocks:
            h = block(h)
        return L.dense(jnp.mean(h, axis=(1, 2)), self.fc[...])

    def embed(self, faces: np.ndarray | jnp.ndarray) -> jnp.ndarray:
        """Descriptors ``[B, 128]`` of aligned face crops ``[B, H, W, 3]`` (or one ``[H, W, 3]``) in [0, 1].

        Crops that are not 150x150 are resized (bilinear, antialiased when shrinking).
        """
        faces = jnp.asarray(faces, jnp.float32)
        if faces.ndim == 3:
            faces = faces[None]
        if faces.ndim != 4 or faces.shape[-1] != 3:
            raise ValueError(f"embed expects [B, H, W, 3] or [H, W, 3] RGB crops, got shape {tuple(faces.shape)}")
        if faces.shape[1:3] != (RECOGNITION_SIZE, RECOGNITION_SIZE):
            faces = jax.image.resize(
                faces, (faces.shape[0], RECOGNITION_SIZE, RECOGNITION_SIZE, 3), "linear", antialias=True
            )
        return L.jitted(self)(faces)
