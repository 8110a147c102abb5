"""``zsm``: Zooming Slow-Mo, one-stage space-time video super-resolution (x4 space, x2 time).

``model.py`` the network (11,102,771 parameters at the paper's size), ``recipe.py`` its losses,
config checks and inference spec (a window of 4 LR frames -> 7 HR frames), ``eval.py`` the
``vid4`` / ``vimeo_septuplet`` protocols, ``torch_ref.py`` the PyTorch re-statement used by the
parity tests and the bench. Presets: ``configs/zsm.py``; results and limits: README.md.
"""

from restore_jax.methods.api import Method
from restore_jax.methods.zsm.eval import EVALUATORS
from restore_jax.methods.zsm.recipe import inference, make_recipe, validate

METHOD = Method(
    id="zsm",
    make_recipe=make_recipe,
    validate=validate,
    evaluators=EVALUATORS,
    inference=inference,
    description="Zooming Slow-Mo: space-time video SR (x4 space, x2 frame rate)",
)
