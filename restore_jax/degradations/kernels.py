"""Blur kernels from explicit parameters: (an)isotropic and generalized Gaussians, motion paths.

All kernels are float32 ``[size, size]`` with odd ``size``, centred on pixel ``(size // 2,
size // 2)``, non-negative and normalised to sum to 1.

Coordinate convention (shared by every kernel here and by the tests): ``x`` is the column offset
from the centre (positive to the right), ``y`` the row offset (positive *downwards*, image
convention). An angle ``theta`` rotates from the +x axis towards +y, so on screen a positive angle
turns clockwise. The anisotropic Gaussian has covariance ``Sigma = R diag(sigma1^2, sigma2^2) R^T``
with ``R = [[cos theta, -sin theta], [sin theta, cos theta]]`` acting on ``(x, y)``: ``sigma1`` is
the standard deviation along direction ``theta``, ``sigma2`` across it.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "covariance_matrix",
    "gaussian_kernel",
    "generalized_gaussian_kernel",
    "motion_kernel",
    "motion_path",
    "pad_kernel",
    "delta_kernel",
]


def _check_size(size: int, fn: str) -> int:
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"{fn}: kernel size must be a positive odd integer, got {size!r}")
    return int(size)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Column (x) and row (y) offsets from the kernel centre, float64 ``[size, size]`` each."""
    r = size // 2
    ax = np.arange(-r, r + 1, dtype=np.float64)
    y, x = np.meshgrid(ax, ax, indexing="ij")
    return x, y


def covariance_matrix(sigma1: float, sigma2: float, theta: float) -> np.ndarray:
    """``Sigma = R diag(sigma1^2, sigma2^2) R^T`` over ``(x, y)`` (float64 ``[2, 2]``)."""
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]], dtype=np.float64)
    return rot @ np.diag([float(sigma1) ** 2, float(sigma2) ** 2]) @ rot.T


def _mahalanobis_sq(sigma1: float, sigma2: float, theta: float, size: int, fn: str) -> np.ndarray:
    if not (sigma1 > 0 and sigma2 > 0):
        raise ValueError(f"{fn}: sigma1 and sigma2 must be > 0, got {sigma1!r}, {sigma2!r}")
    inv = np.linalg.inv(covariance_matrix(sigma1, sigma2, theta))
    x, y = _grid(size)
    return inv[0, 0] * x * x + (inv[0, 1] + inv[1, 0]) * x * y + inv[1, 1] * y * y


def _normalise(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    return (k / k.sum()).astype(np.float32)


def gaussian_kernel(sigma1: float, sigma2: float | None = None, theta: float = 0.0, size: int = 21) -> np.ndarray:
    """Anisotropic Gaussian ``exp(-p^T Sigma^-1 p / 2)`` sampled on the grid, normalised.

    ``sigma2=None`` gives the isotropic kernel (``sigma2 = sigma1``). ``theta`` in radians.
    """
    size = _check_size(size, "gaussian_kernel")
    sigma2 = sigma1 if sigma2 is None else sigma2
    d2 = _mahalanobis_sq(sigma1, sigma2, theta, size, "gaussian_kernel")
    return _normalise(np.exp(-0.5 * d2))


def generalized_gaussian_kernel(
    sigma1: float, sigma2: float | None = None, theta: float = 0.0, beta: float = 1.0, size: int = 21
) -> np.ndarray:
    """Generalized Gaussian ``exp(-(p^T Sigma^-1 p / 2)^beta)`` — ``beta = 1`` is the Gaussian.

    ``beta < 1`` gives heavier tails and a sharper peak, ``beta > 1`` a flatter top ("plateau").
    """
    size = _check_size(size, "generalized_gaussian_kernel")
    if not beta > 0:
        raise ValueError(f"generalized_gaussian_kernel: beta must be > 0, got {beta!r}")
    sigma2 = sigma1 if sigma2 is None else sigma2
    d2 = _mahalanobis_sq(sigma1, sigma2, theta, size, "generalized_gaussian_kernel")
    return _normalise(np.exp(-np.power(0.5 * d2, beta)))


def motion_path(length: float, angle: float, curvature: float = 0.0, num: int | None = None) -> np.ndarray:
    """Points ``[num, 2]`` (x, y) of a circular-arc camera path, centred on its centroid.

    The path has arc length ``length`` (pixels), starts heading along ``angle`` (radians, same
    convention as the module docstring) at its midpoint, and turns by a total of ``curvature``
    radians over its length (0 = straight segment; the sign picks the turning side). Points are
    the midpoints of ``num`` equal arc-length slices (exposure spent uniformly along the path).
    """
    if not length >= 0:
        raise ValueError(f"motion_path: length must be >= 0, got {length!r}")
    if num is None:
        num = max(1, int(math.ceil(8 * length)))
    # Midpoints of ``num`` equal time slices of the exposure (spacing <= 1/8 px by default).
    s = ((np.arange(num, dtype=np.float64) + 0.5) / num - 0.5) * length
    kappa = curvature / length if length > 0 else 0.0
    # u = sin(k s) / k and v = (1 - cos(k s)) / k, written with sinc for stability at k -> 0.
    u = s * np.sinc(kappa * s / np.pi)
    v = 0.5 * kappa * s * s * np.sinc(kappa * s / (2 * np.pi)) ** 2
    c, sn = math.cos(angle), math.sin(angle)
    pts = np.stack([u * c - v * sn, u * sn + v * c], axis=-1)
    return pts - pts.mean(axis=0, keepdims=True)


def motion_kernel(length: float, angle: float, curvature: float = 0.0, size: int = 21) -> np.ndarray:
    """Anti-aliased rasterised motion-blur path (bilinear splatting of dense path samples).

    ``length`` must be at most ``size - 1`` so the path fits; the kernel is centred on the path's
    centroid (no global image shift). ``length = 0`` is the identity (delta) kernel.
    """
    size = _check_size(size, "motion_kernel")
    if not 0 <= length <= size - 1:
        raise ValueError(f"motion_kernel: length must lie in [0, size - 1] = [0, {size - 1}], got {length!r}")
    r = size // 2
    pts = np.clip(motion_path(length, angle, curvature) + r, 0.0, size - 1.0)
    x0 = np.clip(np.floor(pts[:, 0]).astype(np.int64), 0, size - 2) if size > 1 else np.zeros(len(pts), np.int64)
    y0 = np.clip(np.floor(pts[:, 1]).astype(np.int64), 0, size - 2) if size > 1 else np.zeros(len(pts), np.int64)
    fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
    k = np.zeros((size + 1, size + 1), dtype=np.float64)
    np.add.at(k, (y0, x0), (1 - fx) * (1 - fy))
    np.add.at(k, (y0, x0 + 1), fx * (1 - fy))
    np.add.at(k, (y0 + 1, x0), (1 - fx) * fy)
    np.add.at(k, (y0 + 1, x0 + 1), fx * fy)
    return _normalise(k[:size, :size])


def delta_kernel(size: int = 21) -> np.ndarray:
    """Identity kernel: 1 at the centre."""
    size = _check_size(size, "delta_kernel")
    k = np.zeros((size, size), dtype=np.float32)
    k[size // 2, size // 2] = 1.0
    return k


def pad_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad an odd square kernel symmetrically to ``[size, size]`` (centre preserved)."""
    size = _check_size(size, "pad_kernel")
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"pad_kernel: expected an odd square 2-D kernel, got shape {kernel.shape}")
    p = (size - kernel.shape[0]) // 2
    if p < 0:
        raise ValueError(f"pad_kernel: kernel of size {kernel.shape[0]} does not fit in {size}")
    return np.pad(kernel, p)
