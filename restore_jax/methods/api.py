"""The typed contract between a method and everything else: :class:`Method` and :class:`InferenceSpec`.

A method package (``restore_jax/methods/<id>/`` or a user's own package) exposes one ``METHOD``
object. The engine (``restore_jax.train``), inference (``restore_jax.inference``) and the CLI see
a method only through it:

- ``make_recipe(config) -> Recipe``: networks, losses, step kind, predict (``restore_jax.train.recipe``);
- ``validate(config, *, num_devices, process_count)``: the method's own config checks;
- ``evaluators``: ``{protocol name: Evaluator(fn, default_config)}`` this method adds to the
  engine's built-in protocols (``config.eval.protocols`` names them);
- ``sources`` / ``builders``: data sources and sample builders it adds to the generic ones of
  ``input_pipelines`` (``data.source.name`` / ``data.builder.name`` name them);
- ``inference(config) -> InferenceSpec``: what a trained model takes and returns (input kind,
  controls with ranges, size multiple, scale, video windows) — the Restorer, ``restore-jax
  restore`` and ``restore-jax export`` read nothing else.

Nothing registers itself on import: the registry (``restore_jax.methods.registry``) maps ids to
module paths and imports a method only when it is asked for. This module imports no JAX.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from restore_jax.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ml_collections import ConfigDict

    from input_pipelines.builders import BuilderSpec
    from input_pipelines.pipeline import Catalog
    from restore_jax.train.evaluation import Evaluator
    from restore_jax.train.recipe import Recipe

#: What a model takes: one image; a window of consecutive frames; an image plus reference images
#: of the same person; an image plus an audio clip.
INPUT_KINDS = ("image", "window", "image+references", "image+audio")


@dataclasses.dataclass(frozen=True)
class InferenceSpec:
    """What a trained model of a method takes and returns.

    - ``input_kind``: one of :data:`INPUT_KINDS`;
    - ``scale``: output size / input size (height and width);
    - ``multiple``: input height and width must be multiples of it (callers pad);
    - ``controls``: name -> ``ControlSpec`` or its fields (``default``, ``min``, ``max``, ``shape``,
      ``dtype``, ``description``): per-image inputs such as CFMD's moment ``u``;
    - ``channels``: input channels;
    - ``window`` / ``stride`` / ``temporal_scale`` (``input_kind='window'``): frames per model call,
      the step between windows, and output frames per input frame interval (2 for x2 frame
      interpolation: a window of ``T`` frames gives ``temporal_scale * (T - 1) + 1`` frames).
    """

    input_kind: str = "image"
    scale: int = 1
    multiple: int = 1
    controls: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    channels: int = 3
    window: int = 0
    stride: int = 0
    temporal_scale: int = 1

    def __post_init__(self):
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind={self.input_kind!r} is not one of {INPUT_KINDS}")
        for name in ("scale", "multiple", "channels", "temporal_scale"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"InferenceSpec.{name} must be a positive integer, got {value!r}")
        if self.input_kind == "window" and (self.window < 1 or self.stride < 1):
            raise ValueError(f"a window model needs window >= 1 and stride >= 1, got {self.window}, {self.stride}")

    @property
    def video_mode(self) -> dict[str, int] | None:
        """``{'window', 'stride', 'temporal_scale'}`` of a window model, else ``None``."""
        if self.input_kind != "window":
            return None
        return {"window": int(self.window), "stride": int(self.stride), "temporal_scale": int(self.temporal_scale)}

    def output_frames(self, frames: int) -> int:
        """Frames a window model returns for ``frames`` input frames."""
        return self.temporal_scale * (frames - 1) + 1


def default_inference(config: "ConfigDict") -> InferenceSpec:
    """An image model with ``config.model.scale`` / ``config.model.multiple`` (default 1), no controls."""
    model = config.get("model", {}) or {}
    return InferenceSpec(scale=int(model.get("scale", 1)), multiple=int(model.get("multiple", 1)))


@dataclasses.dataclass(frozen=True)
class Method:
    """One restoration method as the engine, inference and the CLI see it (module docstring)."""

    id: str
    make_recipe: Callable[["ConfigDict"], "Recipe"]
    validate: Callable[..., None] | None = None
    evaluators: Mapping[str, "Evaluator"] = dataclasses.field(default_factory=dict)
    sources: Mapping[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)
    builders: Mapping[str, "BuilderSpec"] = dataclasses.field(default_factory=dict)
    inference: Callable[["ConfigDict"], InferenceSpec] = default_inference
    description: str = ""

    def __post_init__(self):
        if not self.id or not isinstance(self.id, str):
            raise ValueError(f"Method.id must be a non-empty string, got {self.id!r}")
        if not callable(self.make_recipe):
            raise TypeError(f"method {self.id!r}: make_recipe must be callable")

    # -- config ----------------------------------------------------------------------------------

    def all_evaluators(self) -> dict[str, "Evaluator"]:
        """The engine's built-in protocols plus this method's (the method's win on a name clash)."""
        from restore_jax.train.evaluation import BUILTIN_EVALUATORS

        return {**BUILTIN_EVALUATORS, **self.evaluators}

    def complete_config(self, config: "ConfigDict") -> "ConfigDict":
        """``config`` with every listed protocol's ``eval.<name>`` section completed from its defaults.

        Config files list protocols and set only what differs; this fills the rest, so every field
        can be overridden from the command line. Returns a new ConfigDict.
        """
        from restore_jax.config.schema import fill_sections

        evaluators = self.all_evaluators()
        defaults = {}
        for name in tuple(config.get("eval", {}).get("protocols", ())):
            if name not in evaluators:
                raise ConfigError(
                    f"eval.protocols lists {name!r}, which method {self.id!r} does not provide; "
                    f"known protocols: {', '.join(sorted(evaluators))}"
                )
            if evaluators[name].default_config is not None:
                defaults[f"eval.{name}"] = evaluators[name].default_config()
        return fill_sections(config, defaults) if defaults else config

    def check_config(self, config: "ConfigDict", *, num_devices: int | None = None, process_count: int = 1) -> "ConfigDict":
        """The engine's checks, then the method's own; :class:`ConfigError` with a fix-it message."""
        from restore_jax.config.schema import validate as engine_validate

        if config.method != self.id:
            raise ConfigError(f"config.method={config.method!r} but this is method {self.id!r}")
        engine_validate(
            config, num_devices=num_devices, process_count=process_count, sources=self.sources, builders=self.builders
        )
        if self.validate is not None:
            self.validate(config, num_devices=num_devices, process_count=process_count)
        return config

    def catalog(self) -> "Catalog":
        """This method's sources and builders for ``input_pipelines`` (looked up before the generic ones)."""
        from input_pipelines.pipeline import Catalog

        return Catalog(sources=dict(self.sources), builders=dict(self.builders))

    def inference_spec(self, config: "ConfigDict") -> InferenceSpec:
        """:class:`InferenceSpec` of a run of this method (checked)."""
        spec = self.inference(config)
        if not isinstance(spec, InferenceSpec):
            raise TypeError(f"method {self.id!r}: inference(config) must return an InferenceSpec, got {type(spec).__name__}")
        return spec


__all__ = ["INPUT_KINDS", "InferenceSpec", "Method", "default_inference"]
