"""``imresize_up_integer``: MATLAB bicubic up-scaling by an integer as a polyphase filter.

Reference: ``imresize_np`` (float64 NumPy, MATLAB's contribution matrices; itself checked against a
loop re-statement of MATLAB's algorithm in ``tests/engine/test_resize.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from restore_jax.ops.resize import imresize_np, imresize_up_integer


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("hw", [(7, 9), (1, 5), (3, 1), (13, 11)])
def test_matches_matlab_reference_on_odd_sizes(scale, hw):
    x = np.random.default_rng(scale * 100 + hw[0]).random((2,) + hw + (3,)).astype(np.float32)
    y = np.asarray(imresize_up_integer(jnp.asarray(x), scale))
    ref = imresize_np(x.astype(np.float64), scale=scale)
    assert y.shape == ref.shape == (2, hw[0] * scale, hw[1] * scale, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=0)


def test_dtype_kept_and_scale_one_is_identity():
    x = np.random.default_rng(1).random((1, 5, 6, 2)).astype(np.float32)
    assert np.array_equal(np.asarray(imresize_up_integer(x, 1)), x)
    y = imresize_up_integer(jnp.asarray(x, jnp.bfloat16), 2)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), imresize_np(x.astype(np.float64), scale=2), atol=0.02)


def test_exports_with_symbolic_batch_height_width():
    b, h, w = export.symbolic_shape("b, h, w")
    exported = export.export(jax.jit(lambda x: imresize_up_integer(x, 3)))(jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32))
    rng = np.random.default_rng(2)
    for shape in ((1, 5, 7, 3), (3, 1, 2, 3), (2, 9, 4, 3)):
        x = rng.random(shape).astype(np.float32)
        np.testing.assert_allclose(np.asarray(exported.call(x)), imresize_np(x.astype(np.float64), scale=3), atol=1e-5)


@pytest.mark.parametrize("bad", [0, 2.0, -3, True])
def test_rejects_non_integer_scales(bad):
    with pytest.raises(ValueError, match="scale must be an integer >= 1"):
        imresize_up_integer(np.zeros((1, 4, 4, 3), np.float32), bad)
