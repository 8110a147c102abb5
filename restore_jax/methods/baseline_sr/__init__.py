"""``baseline_sr``: a small residual x4 face super-resolution network, the engine's reference method.

``model.py`` holds the network, ``recipe.py`` its loss and config checks; the config presets are
``configs/baseline_sr.py`` (see README.md). Evaluation uses the engine's built-in ``sr_psnr_ssim``.
"""

from restore_jax.methods.api import Method
from restore_jax.methods.baseline_sr.recipe import make_recipe, validate

METHOD = Method(
    id="baseline_sr",
    make_recipe=make_recipe,
    validate=validate,
    description="residual x4 face super-resolution (EDSR-baseline style) with a bicubic skip",
)
