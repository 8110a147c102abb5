"""``cfmd``: CFMD-GAN, continuous facial motion deblurring with a moment control ``u`` in [0, 1].

``model.py`` the generator and discriminator, ``recipe.py`` the GAN losses, config checks and
inference spec (an image plus ``u``), ``data.py`` its sources (face videos with cached landmarks,
300VW, mixtures) and the ``cfmd_blur`` builder, ``eval.py`` the ``cfmd_s2s`` / ``cfmd_s2v``
protocols, ``torch_ref.py`` the PyTorch re-statement. Presets: ``configs/cfmd.py``; README.md.
"""

from restore_jax.methods.api import Method
from restore_jax.methods.cfmd.data import BUILDERS, SOURCES
from restore_jax.methods.cfmd.eval import EVALUATORS
from restore_jax.methods.cfmd.recipe import inference, make_recipe, validate

METHOD = Method(
    id="cfmd",
    make_recipe=make_recipe,
    validate=validate,
    evaluators=EVALUATORS,
    sources=SOURCES,
    builders=BUILDERS,
    inference=inference,
    description="CFMD-GAN: facial motion deblurring with a moment control u",
)
