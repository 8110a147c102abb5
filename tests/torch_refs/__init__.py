"""Independent PyTorch re-statements of the library's models, used only as test oracles.

They are written from the architecture specs (NCHW, PyTorch naming), not translated from the JAX
code, so that a shared misreading is unlikely; each module offers a ``transplant_from_nnx`` that
copies the weights of the NNX model under test.
"""
