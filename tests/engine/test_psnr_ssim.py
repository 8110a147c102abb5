"""PSNR / SSIM against scikit-image on real and synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from restore_jax.metrics.psnr_ssim import mean_over_clips, psnr, ssim
from restore_jax.ops.color import rgb_to_y

skm = pytest.importorskip("skimage.metrics")


def _sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return skm.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range,
        channel_axis=-1 if a.ndim == 3 else None,
    )


def _pairs(rng: np.random.Generator, images: list[np.ndarray]):
    for img in images:
        noisy = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
        yield img, noisy
        yield img, np.clip(img * 0.8 + 0.1, 0, 1)


def _synthetic_images() -> list[np.ndarray]:
    yy, xx = np.mgrid[0:48, 0:40] / 40.0
    img = np.stack([np.sin(6 * xx) * 0.5 + 0.5, yy / yy.max(), (xx * yy) % 1.0], axis=-1)
    return [img]


def _check(images):
    rng = np.random.default_rng(0)
    for a, b in _pairs(rng, images):
        np.testing.assert_allclose(float(psnr(a, b)), skm.peak_signal_noise_ratio(a, b, data_range=1.0), rtol=1e-4)
        assert abs(float(ssim(a, b)) - _sk_ssim(a, b, 1.0)) <= 1e-4
        # Y channel, crop border: reference computed on the converted/cropped arrays.
        ya, yb = (rgb_to_y(v)[4:-4, 4:-4, 0] for v in (a, b))
        assert abs(float(ssim(a, b, y_channel=True, crop_border=4)) - _sk_ssim(ya, yb, 1.0)) <= 1e-4
        np.testing.assert_allclose(
            float(psnr(a, b, y_channel=True, crop_border=4)),
            skm.peak_signal_noise_ratio(ya, yb, data_range=1.0), rtol=1e-4,
        )
        # 8-bit scale.
        a8, b8 = np.round(a * 255), np.round(b * 255)
        assert abs(float(ssim(a8, b8, data_range=255.0)) - _sk_ssim(a8, b8, 255.0)) <= 1e-4


def test_against_skimage_synthetic():
    _check(_synthetic_images())


def test_against_skimage_real_faces(shared_data):
    files = sorted((shared_data / "faces128" / "val").glob("*.png"))[:3]
    assert files, "faces128/val has no PNG files"
    _check([np.asarray(Image.open(f).convert("RGB"), np.float64) / 255.0 for f in files])


def test_batched_and_identical():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(2, 3, 24, 24, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    s = np.asarray(ssim(a, b))
    assert s.shape == (2, 3)
    assert abs(s[1, 2] - _sk_ssim(a[1, 2].astype(np.float64), b[1, 2].astype(np.float64), 1.0)) <= 1e-4
    assert np.isinf(float(psnr(a[0, 0], a[0, 0])))
    assert float(ssim(a[0, 0], a[0, 0])) == pytest.approx(1.0, abs=1e-6)


def test_errors_and_clip_average():
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="crop_border"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), crop_border=4)
    assert mean_over_clips({"a": [1.0, 3.0], "b": [4.0]}) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        mean_over_clips([])
