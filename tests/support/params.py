"""Independent PyTorch re-statements of the library's models, used only as test oracles.

They are written from the architecture specs (NCHW, PyTorch naming), not translated from the JAX
code, so that a shared misreading is unlikely; each module offers a ``transplant_from_nnx`` that
copies the weights of the NNX model under test.
"""

from restore_jax.train.paths import key_name


def nnx_param_names(path) -> tuple[str, ...]:
    """Key path of an ``nnx.State`` leaf as a tuple of names, without the trailing ``value``."""
    names = tuple(key_name(k) for k in path)
    return names[:-1] if names and names[-1] == "value" else names
