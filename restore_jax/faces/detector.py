"""Tiny face detector: a tiny-YOLOv2-style single-scale detector (face-api ``tiny_face_detector``).

Architecture, re-stated from the tensor names and shapes (NHWC; ``sep`` = depthwise 3x3 ->
pointwise 1x1 -> bias, with 1 pixel of zero padding on each side; ``leaky`` = LeakyReLU(0.1)):

==========  ==================================  =========  =====================
layer       op                                  channels   size (416 input)
==========  ==================================  =========  =====================
conv0       3x3 conv, no padding, leaky         3 -> 16    414
pool        2x2 max-pool, stride 2, "same"                 207
conv1       sep, leaky; 2x2 max-pool s2         16 -> 32   104
conv2       sep, leaky; 2x2 max-pool s2         32 -> 64   52
conv3       sep, leaky; 2x2 max-pool s2         64 -> 128  26
conv4       sep, leaky; 2x2 max-pool s2         128 -> 256 13
conv5       sep, leaky; 2x2 max-pool s1 "same"  256 -> 512 13
conv8       1x1 conv (no activation)            512 -> 25  13
==========  ==================================  =========  =====================

Input: RGB normalised as ``(pixel - [117.001, 114.697, 97.404]) / 256`` with ``pixel`` in
[0, 255]. Any input size that is a multiple of 32 works (grid = size / 32; 416 -> 13x13).

Decoding (YOLOv2): the 25 output channels are 5 anchors x (tx, ty, tw, th, to). For the cell at
column ``c``, row ``r`` of a ``G x G`` grid and anchor ``(aw, ah)`` (in grid cells)::

    centre x = (c + sigmoid(tx)) / G,  centre y = (r + sigmoid(ty)) / G
    width    = exp(tw) * aw / G,       height   = exp(th) * ah / G
    score    = sigmoid(to)

as fractions of the input size; boxes whose score exceeds ``score_threshold`` (default 0.5) are
kept, then greedy non-maximum suppression at IoU ``iou_threshold`` (default 0.4) runs in NumPy.
Anchors (w, h), in grid cells: (1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
(4.266906, 5.178857), (9.041765, 10.66308).

The boxes span roughly brows to chin and cheek to cheek; :mod:`restore_jax.faces.align`
turns them into landmark crops.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from restore_jax.faces import _layers as L
from restore_jax.faces.weights import load_face_api_weights

__all__ = ["DETECTOR_ANCHORS", "DETECTOR_MEAN_RGB", "TinyFaceDetector", "decode_detections", "nms"]

DETECTOR_MEAN_RGB = (117.001, 114.697, 97.404)
DETECTOR_ANCHORS = np.array(
    [[1.603231, 2.094468], [6.041143, 7.080126], [2.882459, 3.518061], [4.266906, 5.178857], [9.041765, 10.66308]],
    dtype=np.float64,
)
_WIDTHS = (16, 32, 64, 128, 256, 512)
_NAME = "TinyFaceDetector"


def _weight_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"conv0/filters": (3, 3, 3, 16), "conv0/bias": (16,)}
    for i in range(1, 6):
        cin, cout = _WIDTHS[i - 1], _WIDTHS[i]
        shapes[f"conv{i}/depthwise_filter"] = (3, 3, cin, 1)
        shapes[f"conv{i}/pointwise_filter"] = (1, 1, cin, cout)
        shapes[f"conv{i}/bias"] = (cout,)
    shapes["conv8/filters"] = (1, 1, 512, 25)
    shapes["conv8/bias"] = (25,)
    return shapes


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    ``boxes`` [N, 4] as (x0, y0, x1, y1); a box is dropped when its IoU with an already kept,
    higher-scoring box exceeds ``iou_threshold``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        ix0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        iy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        ix1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        iy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_detections(
    raw: np.ndarray,
    input_size: tuple[int, int],
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[N, 4]`` (x0, y0, x1, y1 in input pixels) and scores ``[N]`` from one raw output.

    ``raw``: ``[Gh, Gw, 25]`` output of :class:`TinyFaceDetector` for one image of size
    ``input_size = (height, width)``. Formulas in the module docstring.
    """
    raw = np.asarray(raw, np.float64)
    gh, gw, ch = raw.shape
    if ch != 5 * len(DETECTOR_ANCHORS):
        raise ValueError(f"expected {5 * len(DETECTOR_ANCHORS)} channels, got raw output of shape {raw.shape}")
    t = raw.reshape(gh, gw, len(DETECTOR_ANCHORS), 5)
    scores = _sigmoid(t[..., 4])
    rows, cols, anchors = np.nonzero(scores > score_threshold)
    if rows.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    tt = t[rows, cols, anchors]
    h, w = input_size
    cx = (cols + _sigmoid(tt[:, 0])) / gw * w
    cy = (rows + _sigmoid(tt[:, 1])) / gh * h
    bw = np.exp(tt[:, 2]) * DETECTOR_ANCHORS[anchors, 0] / gw * w
    bh = np.exp(tt[:, 3]) * DETECTOR_ANCHORS[anchors, 1] / gh * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    s = scores[rows, cols, anchors]
    keep = nms(boxes, s, iou_threshold)
    return boxes[keep].astype(np.float32), s[keep].astype(np.float32)


class TinyFaceDetector(nnx.Module):
    """Image ``[B, S, S, 3]`` (RGB in [0, 1], ``S`` a multiple of 32) -> raw grid ``[B, S/32, S/32, 25]``.

    ``__call__`` is jittable; :meth:`detect` handles any image size on the host.
    """

    def __init__(self, weights: Mapping[str, np.ndarray]):
        self.conv0 = L.Conv(L.take(weights, "conv0/filters", (3, 3, 3, 16), _NAME),
                            L.take(weights, "conv0/bias", (16,), _NAME), stride=1, padding="VALID")
        self.convs = nnx.List([
            L.separable(weights, f"conv{i}", _WIDTHS[i - 1], _WIDTHS[i], _NAME, padding=((1, 1), (1, 1)))
            for i in range(1, 6)
        ])  # fmt: skip
        self.conv8 = L.Conv(L.take(weights, "conv8/filters", (1, 1, 512, 25), _NAME),
                            L.take(weights, "conv8/bias", (25,), _NAME), stride=1, padding="VALID")

    @staticmethod
    def weight_shapes() -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape table the net expects (matches ``tiny_face_detector_model``)."""
        return _weight_shapes()

    @classmethod
    def from_face_api(cls, weights_dir: str | os.PathLike | None = None) -> "TinyFaceDetector":
        """Load ``tiny_face_detector_model`` (see :mod:`restore_jax.faces.weights`)."""
        return cls(load_face_api_weights("tiny_face_detector", weights_dir))

    @classmethod
    def random(cls, seed: int = 0) -> "TinyFaceDetector":
        """Random weights of the right shapes (for tests and shape checks, not for use)."""
        return cls(L.random_weights(_weight_shapes(), seed))

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if x.ndim != 4 or x.shape[-1] != 3 or x.shape[1] % 32 or x.shape[2] % 32:
            raise ValueError(
                f"TinyFaceDetector expects [B, H, W, 3] RGB in [0, 1] with H, W multiples of 32, got shape "
                f"{tuple(x.shape)}; use detect() for arbitrary images"
            )
        h = (x.astype(jnp.float32) * 255.0 - jnp.asarray(DETECTOR_MEAN_RGB, jnp.float32)) / 256.0
        h = L.max_pool(L.leaky_relu(self.conv0(h)), 2, 2, "SAME")
        for i, conv in enumerate(self.convs):
            h = L.max_pool(L.leaky_relu(conv(h)), 2, 2 if i < 4 else 1, "SAME")
        return self.conv8(h)

    def detect(
        self,
        image: np.ndarray,
        *,
        input_size: int = 416,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.4,
        pads: tuple[float, ...] = (0.0, 0.5),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Faces in one image ``[H, W, 3]`` (RGB, float in [0, 1] or uint8) of any size.

        For each ``p`` in ``pads`` the image is centred on a square canvas of side
        ``max(H, W) * (1 + 2p)`` (the border replicates the edge pixels), resized to ``input_size``
        (PIL bilinear on 8-bit values, antialiased when shrinking), run, and decoded (see
        :func:`decode_detections`). Why several pads: this detector misses faces that fill more
        than about 40 % of its input, so a padded pass catches close-ups (on the face_video clips,
        whose faces span about half the frame, one face is found in 60 % of frames with
        ``pads=(0,)``, 98 % with the default ``(0, 0.5)``) while the unpadded pass keeps small faces
        large enough. Boxes are mapped back to the image's pixels (origin at the top-left corner),
        clipped to it and merged across passes by NMS.
        Returns ``(boxes [N, 4] as x0 y0 x1 y1, scores [N])``, best first.
        """
        if input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        if not pads or any(p < 0 for p in pads):
            raise ValueError(f"pads must be a non-empty tuple of non-negative fractions, got {pads!r}")
        img8 = _as_uint8_image(image, "detect")  # host-side resizing with PIL (fast, antialiased)
        h, w, _ = img8.shape
        batch, frames = [], []
        for p in pads:
            side = int(round(max(h, w) * (1 + 2 * p)))
            oy, ox = (side - h) // 2, (side - w) // 2
            canvas = np.pad(img8, ((oy, side - h - oy), (ox, side - w - ox), (0, 0)), mode="edge")
            resized = Image.fromarray(canvas).resize((input_size, input_size), Image.Resampling.BILINEAR)
            batch.append(np.asarray(resized, np.float32) / 255.0)
            frames.append((side / input_size, ox, oy))
        raw = np.asarray(L.jitted(self)(jnp.asarray(np.stack(batch))))
        all_boxes, all_scores = [], []
        for r, (scale, ox, oy) in zip(raw, frames):
            boxes, scores = decode_detections(
                r, (input_size, input_size), score_threshold=score_threshold, iou_threshold=iou_threshold
            )
            all_boxes.append(boxes * scale - np.array([ox, oy, ox, oy], np.float32))
            all_scores.append(scores)
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        keep = nms(boxes, scores, iou_threshold)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)


def _as_uint8_image(image: np.ndarray, fn: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 from a uint8 or float (in [0, 1]) RGB image."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"{fn} expects one RGB image [H, W, 3], got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"{fn} expects uint8 or float RGB in [0, 1], got dtype {img.dtype}")
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
