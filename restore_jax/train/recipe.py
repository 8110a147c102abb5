"""What a method hands to the engine: networks, losses, step kind, and how to show/evaluate outputs.

A *loss function* has the signature ``loss(models, batch, rng) -> (loss, metrics)``:

- ``models``: ``{name: nnx.Module}`` merged from the current parameters (cast to the compute dtype);
  in a GAN step the networks other than the one being updated are constants;
- ``batch``: dict of global arrays (the ``input_keys`` already cast to the compute dtype);
- ``rng``: a typed key, a pure function of ``(seed, step)``;
- returns a float32 scalar and a dict of float32 scalars for logging.

Which losses a step kind expects:

- ``supervised``: ``losses = {primary: loss}``;
- ``gan``: ``losses = {'D': d_loss, 'G': g_loss}`` (``primary`` = 'G'); D is updated first with G fixed,
  then G with the updated D fixed;
- ``contrastive``: ``losses = {primary: embed}`` where ``embed(models, x, rng) -> [B, D]`` embeds one
  view; the engine owns the momentum key encoder, the queue and the InfoNCE loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from flax import nnx

Batch = Mapping[str, jax.Array]
Models = Mapping[str, nnx.Module]
LossFn = Callable[[Models, Batch, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A method's contribution to the shared engine (see the module docstring)."""

    networks: Mapping[str, Callable[[nnx.Rngs], nnx.Module]]
    losses: Mapping[str, Callable[..., Any]]
    step_kind: str = "supervised"
    primary: str = "G"
    input_keys: tuple[str, ...] = ()  # batch keys cast to the compute dtype before the loss
    # Batch keys the step needs (others are not sent to the devices); None = every numeric key.
    batch_keys: tuple[str, ...] | None = None
    # predict(models, batch) -> restored image batch; used for image grids and evaluation.
    predict: Callable[[Models, Batch], jax.Array] | None = None
    # Keys of the batch shown in image grids as (input, output=predict, target).
    image_keys: tuple[str, str] = ("lr", "hr")
    # contrastive: the two views (query, key) in the batch
    view_keys: tuple[str, str] = ("view_q", "view_k")
    # metric_warnings(step, logged_metrics) -> lines the loop prints at each log point (host side,
    # e.g. a monitored quantity leaving its safe range); None = no checks.
    metric_warnings: Callable[[int, Mapping[str, float]], Sequence[str]] | None = None

    def __post_init__(self):
        if self.primary not in self.networks:
            raise ValueError(f"recipe primary network {self.primary!r} is not in networks {sorted(self.networks)}")
        need = {"supervised": {self.primary}, "gan": {"D", "G"}, "contrastive": {self.primary}}
        if self.step_kind not in need:
            raise ValueError(f"unknown step kind {self.step_kind!r}; choose one of {sorted(need)}")
        missing = need[self.step_kind] - set(self.losses)
        if missing:
            raise ValueError(f"a {self.step_kind} recipe needs losses for {sorted(missing)}")
