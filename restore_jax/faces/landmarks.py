"""68-point facial landmark regressors (face-api ``face_landmark_68`` and ``_tiny`` weights).

Architecture, re-stated from the tensor names and shapes (NHWC; ``sep`` = depthwise 3x3 ->
pointwise 1x1 -> bias, TF "same" padding, no activation inside):

* input 112x112 RGB, normalised as ``(pixel - [122.782, 117.001, 104.298]) / 255`` with ``pixel``
  in [0, 255];
* "dense blocks" with additive (not concatenating) dense connections. Block ``k`` with convs
  ``conv0..conv{n-1}``::

      o1 = ReLU(conv0(x))            # stride 2; a plain 3x3 conv in dense0, a ``sep`` otherwise
      o2 = sep(o1)                   # conv1
      o3 = sep(ReLU(o1 + o2))        # conv2
      o4 = sep(ReLU(o1 + o2 + o3))   # conv3 (4-conv blocks only)
      out = ReLU(o1 + o2 + ... + on)

  - full model: 4 blocks of 4 convs, widths 32, 64, 128, 256 (112 -> 56 -> 28 -> 14 -> 7),
    then a 7x7 average pool (stride 2, valid: 7 -> 1);
  - tiny model: 3 blocks of 3 convs, widths 32, 64, 128 (112 -> 56 -> 28 -> 14), then a 14x14
    average pool (14 -> 1). (Its ``dense0/conv2`` weights are all zero in the shipped file, so that
    conv only adds its bias.)
* ``fc``: [C, 136] + bias. Output ``2i, 2i+1`` is point ``i``'s (x, y) as a fraction of the input
  width / height, in the iBUG 300-W 68-point order (0-16 jaw, 17-26 brows, 27-35 nose, 36-41 and
  42-47 the eyes on the image's left and right, 48-67 mouth).

Coordinates returned here are in input **pixels** with the origin at the top-left *corner* of the
image (the centre of pixel ``(row i, col j)`` is ``(x, y) = (j + 0.5, i + 0.5)``), i.e. the
fractions times 112. :meth:`FaceLandmarkNet.predict` maps them back to the caller's crop size.
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

__all__ = ["FaceLandmarkNet", "LANDMARK_MEAN_RGB", "LANDMARK_SIZE"]

LANDMARK_SIZE = 112
LANDMARK_MEAN_RGB = (122.782, 117.001, 104.298)
_WIDTHS = {"full": (32, 64, 128, 256), "tiny": (32, 64, 128)}
_CONVS = {"full": 4, "tiny": 3}
_MODEL_KEY = {"full": "face_landmark_68", "tiny": "face_landmark_68_tiny"}


def _weight_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    cin = 3
    for b, cout in enumerate(_WIDTHS[variant]):
        for k in range(_CONVS[variant]):
            p = f"dense{b}/conv{k}"
            if b == 0 and k == 0:
                shapes[f"{p}/filters"] = (3, 3, 3, cout)
            else:
                c = cin if k == 0 else cout
                shapes[f"{p}/depthwise_filter"] = (3, 3, c, 1)
                shapes[f"{p}/pointwise_filter"] = (1, 1, c, cout)
            shapes[f"{p}/bias"] = (cout,)
        cin = cout
    shapes["fc/weights"] = (cin, 136)
    shapes["fc/bias"] = (136,)
    return shapes


class _DenseBlock(nnx.Module):
    def __init__(self, weights: Mapping[str, np.ndarray], index: int, cin: int, cout: int, n_convs: int, name: str):
        p = f"dense{index}"
        if index == 0:
            first = L.Conv(L.take(weights, f"{p}/conv0/filters", (3, 3, cin, cout), name),
                           L.take(weights, f"{p}/conv0/bias", (cout,), name), stride=2, padding="SAME")
        else:
            first = L.separable(weights, f"{p}/conv0", cin, cout, name, stride=2, padding="SAME")
        self.first = first
        self.rest = nnx.List([L.separable(weights, f"{p}/conv{k}", cout, cout, name) for k in range(1, n_convs)])

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        total = jax.nn.relu(self.first(x))
        for conv in self.rest:
            total = total + conv(jax.nn.relu(total))  # relu(o1) == o1, so conv1 sees o1 itself
        return jax.nn.relu(total)


class FaceLandmarkNet(nnx.Module):
    """112x112 RGB face crop -> 68 landmarks ``[B, 68, 2]`` as (x, y) in input pixels.

    ``variant``: ``"full"`` (``face_landmark_68_model``) or ``"tiny"`` (``..._tiny_model``).
    ``__call__`` takes float RGB in ``[0, 1]``, shape ``[B, 112, 112, 3]``, and is jittable;
    :meth:`predict` takes any-size square crops and runs a cached jit.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], variant: str = "full"):
        if variant not in _WIDTHS:
            raise ValueError(f"FaceLandmarkNet variant must be 'full' or 'tiny', got {variant!r}")
        self.variant = variant
        name = f"FaceLandmarkNet[{variant}]"
        blocks, cin = [], 3
        for b, cout in enumerate(_WIDTHS[variant]):
            blocks.append(_DenseBlock(weights, b, cin, cout, _CONVS[variant], name))
            cin = cout
        self.blocks = nnx.List(blocks)
        self.fc_w = nnx.Param(L.take(weights, "fc/weights", (cin, 136), name))
        self.fc_b = nnx.Param(L.take(weights, "fc/bias", (136,), name))

    @staticmethod
    def weight_shapes(variant: str = "full") -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape table for the ``full`` or ``tiny`` model."""
        return _weight_shapes(variant)

    @classmethod
    def from_face_api(cls, weights_dir: str | os.PathLike | None = None, variant: str = "full") -> "FaceLandmarkNet":
        """Load ``face_landmark_68_model`` (``variant="full"``) or ``face_landmark_68_tiny_model``."""
        if variant not in _MODEL_KEY:
            raise ValueError(f"FaceLandmarkNet variant must be 'full' or 'tiny', got {variant!r}")
        return cls(load_face_api_weights(_MODEL_KEY[variant], weights_dir), variant)

    @classmethod
    def random(cls, seed: int = 0, variant: str = "full") -> "FaceLandmarkNet":
        """Random weights of the right shapes (for tests and shape checks, not for use)."""
        return cls(L.random_weights(_weight_shapes(variant), seed), variant)

    def normalise(self, x: jnp.ndarray) -> jnp.ndarray:
        """[0, 1] RGB -> the network's input scale."""
        return (x.astype(jnp.float32) * 255.0 - jnp.asarray(LANDMARK_MEAN_RGB, jnp.float32)) / 255.0

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if x.ndim != 4 or x.shape[1:] != (LANDMARK_SIZE, LANDMARK_SIZE, 3):
            raise ValueError(
                f"FaceLandmarkNet expects [B, {LANDMARK_SIZE}, {LANDMARK_SIZE}, 3] RGB in [0, 1], got "
                f"shape {tuple(x.shape)}; use predict() for other sizes"
            )
        h = self.normalise(x)
        for block in self.blocks:
            h = block(h)
        h = jnp.mean(h, axis=(1, 2))  # the final average pool covers the whole (7x7 / 14x14) map
        out = L.dense(h, self.fc_w[...], self.fc_b[...])
        return out.reshape(x.shape[0], 68, 2) * LANDMARK_SIZE

    def predict(self, crops: np.ndarray | jnp.ndarray) -> np.ndarray:
        """Landmarks ``[B, 68, 2]`` (x, y) in the crops' own pixels, for crops ``[B, H, W, 3]`` in [0, 1].

        Crops are resized to 112x112 (bilinear, antialiased when shrinking); the fractions are
        scaled by each axis' size, so non-square crops work but distort the face (square is best).
        """
        crops = jnp.asarray(crops, jnp.float32)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3:
            raise ValueError(f"predict expects [B, H, W, 3] or [H, W, 3] RGB crops, got shape {tuple(crops.shape)}")
        b, h, w, _ = crops.shape
        if (h, w) != (LANDMARK_SIZE, LANDMARK_SIZE):
            crops = jax.image.resize(crops, (b, LANDMARK_SIZE, LANDMARK_SIZE, 3), "linear", antialias=True)
        pts = np.asarray(L.jitted(self)(crops), dtype=np.float64)
        return pts * (np.array([w, h], np.float64) / LANDMARK_SIZE)
