"""The config schema: the engine's base sections, preset parsing, overrides, engine validation.

It knows no method: a method's own checks are its ``Method.validate`` (``restore_jax.methods.api``).
A method config is a Python file ``configs/<method>.py`` with ``get_config(arg: str | None)``
returning an ``ml_collections.ConfigDict``. ``arg`` selects a preset (``paper``, ``small``, ``ci``,
``demo``...) and may carry extra ``key=value`` knobs, big_vision style::

    restore-jax train --config configs/baseline_sr.py:demo --workdir /tmp/demo --config.optim.lr=1e-3

Importing this module imports no JAX (only ``ml_collections`` and the engine's error types):
validation takes the device and process counts as arguments so it runs before any backend starts.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections import ConfigDict

from restore_jax.errors import ConfigError

NAN_POLICIES = ("stop", "skip")
COMPUTE_DTYPES = ("float32", "bfloat16")
STEP_KINDS = ("supervised", "gan", "contrastive")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "cosine_restarts", "exponential")
MESH_AXES = ("data", "fsdp")


# --------------------------------------------------------------------------------------------
# Presets.


def parse_arg(arg: str | None, *, presets: Sequence[str], default: str, **knobs: Any) -> ConfigDict:
    """Parse ``"demo"`` / ``"preset=demo,steps=100"`` into ``ConfigDict(preset=..., **knobs)``.

    ``knobs`` gives the allowed extra keys with their default values (their type is used to parse
    the string). Unknown presets or keys raise :class:`ConfigError` listing the valid ones.
    """
    out = {"preset": default, **knobs}
    for i, part in enumerate(p.strip() for p in (arg or "").split(",") if p.strip()):
        if "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
        elif i == 0:
            key, value = "preset", part
        else:
            raise ConfigError(f"config argument part {part!r} must be key=value")
        if key not in out:
            raise ConfigError(f"unknown config argument {key!r}; known: {sorted(out)}")
        out[key] = value if key == "preset" else _parse_value(value, out[key], f"config argument {key}")
    if out["preset"] not in presets:
        raise ConfigError(f"unknown preset {out['preset']!r}; choose one of: {', '.join(presets)}")
    return ConfigDict(out)


# --------------------------------------------------------------------------------------------
# The engine's sections with their defaults (a method config starts from this).


def base_config() -> ConfigDict:
    """Engine sections every method config has; methods add ``model``, ``loss``, ``data``."""
    c = ConfigDict()
    c.method = ""
    # A method outside this package: the module holding its ``METHOD`` (``pkg.mod``), resolved
    # instead of the registry; '' = look ``method`` up (built-in ids and entry points).
    c.method_module = ""
    c.preset = ""  # the preset get_config was called with (provenance)
    c.seed = 0

    c.train = ConfigDict()
    c.train.step_kind = "supervised"
    c.train.num_steps = 1000
    c.train.global_batch_size = 16
    c.train.grad_accum_steps = 1
    c.train.compute_dtype = "float32"  # 'bfloat16': bf16 compute, f32 params and loss reductions
    c.train.ema_decay = 0.0  # 0 disables EMA; otherwise ema_params of the primary network
    c.train.nan_policy = "stop"  # 'stop' | 'skip' (non-finite updates are never applied)
    c.train.max_consecutive_nonfinite = 20  # 'skip' gives up after this many bad steps in a row

    c.optim = optim_config()

    c.gan = ConfigDict()
    c.gan.loss = "ns"  # 'ns' | 'hinge'
    c.gan.d_steps_per_step = 1  # discriminator updates in every train step
    c.gan.g_every = 1  # generator updated on steps where step % g_every == 0

    c.contrastive = ConfigDict()
    c.contrastive.queue_size = 256
    c.contrastive.temperature = 0.07
    c.contrastive.momentum = 0.999
    c.contrastive.embed_dim = 64

    c.mesh = ConfigDict()
    c.mesh.shape = (-1, 1)  # -1: all remaining devices
    c.mesh.axes = MESH_AXES

    c.sharding = ConfigDict()
    # (regex on the '/'-joined state path, spec): spec is 'replicate', 'fsdp', or a tuple of
    # mesh-axis names / None per dimension. The first match wins; no match means replicate.
    c.sharding.rules = ((".*", "fsdp"),)
    c.sharding.fsdp_min_size = 2**16  # arrays with fewer elements stay replicated

    c.checkpoint = ConfigDict()
    c.checkpoint.enabled = True
    c.checkpoint.every_steps = 500
    c.checkpoint.keep_last = 3
    c.checkpoint.keep_best = 1  # by eval metric (0 disables)
    c.checkpoint.best_metric = ""  # e.g. 'synthetic/psnr'; '' disables best-by-metric
    c.checkpoint.best_mode = "max"  # 'max' | 'min'
    c.checkpoint.async_save = True
    # When checkpoints exist but none is readable, training stops with CheckpointError (exit 2)
    # instead of silently restarting from step 0; True allows that fresh start.
    c.checkpoint.allow_fresh_start = False

    c.log = ConfigDict()
    c.log.every_steps = 50
    c.log.image_every_steps = 500  # 0 disables image grids
    c.log.num_images = 4
    c.log.console = True
    c.log.profile_start_step = -1  # >= 0: trace profile_num_steps steps from there (process 0)
    c.log.profile_num_steps = 5

    c.eval = ConfigDict()
    c.eval.every_steps = 0  # 0: only at the end (if final) and via `restore-jax eval`
    c.eval.final = True
    c.eval.protocols = ()
    c.eval.use_ema = True  # evaluate ema_params when EMA is on
    return c


def optim_config(**overrides: Any) -> ConfigDict:
    """One network's optimizer: Adam/AdamW, schedule with warm-up, clipping, per-path lr multipliers."""
    o = ConfigDict()
    o.name = "adam"  # 'adam' | 'adamw'
    o.lr = 1e-3
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.0  # AdamW only; applied to arrays with ndim > 1
    o.grad_clip_norm = 0.0  # > 0: clip by global norm
    o.schedule = "constant"  # 'constant' | 'cosine' | 'cosine_restarts' | 'exponential'
    o.warmup_steps = 0
    o.min_lr_ratio = 0.0  # cosine floor as a fraction of lr
    o.restart_periods = ()  # cosine_restarts: period lengths in steps (empty: num_restarts equal ones)
    o.restart_weights = ()  # cosine_restarts: peak lr multiplier per period (empty: all 1)
    o.num_restarts = 1
    o.decay_rate = 0.5  # exponential: lr * decay_rate ** floor(step / steps_per_epoch)
    o.steps_per_epoch = 1000
    o.lr_multipliers = ()  # ((regex on param path, multiplier), ...), e.g. (('offset', 0.1),)
    o.update(overrides)
    return o


# --------------------------------------------------------------------------------------------
# Command-line overrides.


def _flat_keys(config: ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys.append(prefix + k)
        if isinstance(v, ConfigDict):
            keys.extend(_flat_keys(v, prefix + k + "."))
    return keys


def _parse_value(text: str, current: Any, where: str) -> Any:
    """Parse ``text`` into the type of ``current`` (the default), with a message on mismatch."""
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"{where} expects a boolean (true/false), got {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where} expects an integer, got {text!r}") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{where} expects a number, got {text!r}") from None
    if isinstance(current, str):
        return text
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            # A comma-separated list of words: a,b,c or (a,b,c) / [a, b, c] without quotes
            body = text.strip()
            if body[:1] + body[-1:] in ("()", "[]"):
                body = body[1:-1]
            value = tuple(s.strip().strip("'\"") for s in body.split(",") if s.strip())
        if isinstance(value, (str, int, float)):
            value = (value,)
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{where} expects a tuple, got {text!r}")
        return tuple(value)
    if isinstance(current, ConfigDict):
        raise ConfigError(f"{where} is a section; set one of its fields instead ({where}.<field>=...)")
    try:  # None or another type: take a Python literal, else the string
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_override_args(args: Sequence[str]) -> list[tuple[str, str]]:
    """``['--config.a.b=1', '--config.c', '2']`` -> ``[('a.b', '1'), ('c', '2')]``; rejects anything else."""
    out, i = [], 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--config."):
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --config.optim.lr=1e-3")
        body = arg[len("--config.") :]
        if "=" in body:
            key, value = body.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override {arg!r} has no value; use {arg}=VALUE")
            key, value = body, args[i + 1]
            i += 1
        if not key:
            raise ConfigError(f"override {arg!r} names no field")
        out.append((key, value))
        i += 1
    return out


# Sections whose keys are free: a data source's / builder's constructor arguments (``kwargs``)
# and their per-split updates (``splits``). Overrides may add keys inside them (anywhere below).
FREE_FORM_SECTIONS = ("kwargs", "splits")


def _named_sections_changed(config: ConfigDict, overrides: Sequence[tuple[str, str]]) -> list[str]:
    """Dotted paths of ``{name, kwargs}`` sections (``data.source``, ``data.builder``) whose
    ``name`` the overrides change (the last override of a key wins)."""
    final: dict[str, str] = {}
    for key, text in overrides:
        if key.endswith(".name"):
            final[key[: -len(".name")]] = text
    changed = []
    for section, text in final.items():
        node = config
        for part in section.split("."):
            node = node.get(part) if isinstance(node, ConfigDict) else None
        if (
            isinstance(node, ConfigDict) and isinstance(node.get("name"), str)
            and isinstance(node.get("kwargs"), ConfigDict) and text != node.name
        ):
            changed.append(section)
    return changed


def apply_overrides(config: ConfigDict, overrides: Iterable[tuple[str, str]] | Sequence[str]) -> ConfigDict:
    """Set dotted fields from strings, typed like their defaults; unknown fields are errors.

    ``overrides`` is a list of ``(dotted_key, text)`` pairs or of ``--config.key=value`` strings.
    Returns a new ConfigDict (the input is not modified).

    Inside ``kwargs`` and ``splits`` sections (a data source's or builder's arguments,
    ``FREE_FORM_SECTIONS``) an override may also add a key, e.g. ``--config.data.source.kwargs.root=/x``;
    a new key's value is read as a Python literal (``3``, ``(64, 48)``, ``True``, ``None``) and
    otherwise kept as a string. An override that changes the ``name`` of such a section
    (``--config.data.source.name=image_folder``) starts its ``kwargs`` and ``splits`` empty, whatever
    the order of the overrides: the previous source's arguments mean nothing to another one.
    """
    overrides = list(overrides)
    if overrides and isinstance(overrides[0], str):
        overrides = parse_override_args(overrides)
    config = ConfigDict(config.to_dict())  # unlocked deep copy with the same types
    known = _flat_keys(config)
    for section in _named_sections_changed(config, overrides):
        node = config
        for part in section.split("."):
            node = node[part]
        with node.ignore_type():
            node.kwargs = ConfigDict()
            if isinstance(node.get("splits"), ConfigDict):
                node.splits = ConfigDict()
    for key, text in overrides:
        parent, _, leaf = key.rpartition(".")
        node, free = config, False
        for part in parent.split(".") if parent else []:
            if not isinstance(node, ConfigDict):
                node = None
                break
            if part not in node and free:
                node[part] = ConfigDict()  # a new key below a kwargs / splits section
            node = node.get(part)
            free = free or part in FREE_FORM_SECTIONS
        if not isinstance(node, ConfigDict) or (leaf not in node and not free):
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join('--config.' + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown config field --config.{key}{hint}")
        value = _parse_value(text, node.get(leaf), f"--config.{key}")
        with node.ignore_type():
            node[leaf] = value
    return config


def fill_sections(config: ConfigDict, defaults: Mapping[str, ConfigDict]) -> ConfigDict:
    """Complete dotted sections (``{'eval.vid4': default_section}``) from their defaults.

    A missing section is added whole; a present one keeps its values and gains the missing fields
    (so a config file may set only what differs). Returns a new ConfigDict; the input is unchanged.
    """
    config = ConfigDict(config.to_dict())
    for dotted, default in defaults.items():
        parent_key, _, leaf = dotted.rpartition(".")
        node = config
        for part in parent_key.split(".") if parent_key else []:
            if part not in node:
                node[part] = ConfigDict()
            node = node[part]
        merged = ConfigDict(default.to_dict() if isinstance(default, ConfigDict) else dict(default))
        if leaf in node:
            present = node[leaf]
            if not isinstance(present, ConfigDict):
                raise ConfigError(f"config.{dotted} must be a section (ConfigDict), got {type(present).__name__}")
            with merged.ignore_type():
                merged.update(present.to_dict())
        with node.ignore_type():
            node[leaf] = merged
    return config


# --------------------------------------------------------------------------------------------
# Validation.


def resolve_mesh_sizes(shape: Sequence[int], axes: Sequence[str], num_devices: int) -> dict[str, int]:
    """Sizes of ``('data', 'fsdp')`` from a config shape (one ``-1`` allowed); ConfigError if impossible."""
    shape, axes = tuple(int(s) for s in shape), tuple(axes)
    if len(shape) != len(axes):
        raise ConfigError(f"mesh.shape {shape} and mesh.axes {axes} must have the same length")
    if any(a not in MESH_AXES for a in axes) or len(set(axes)) != len(axes):
        raise ConfigError(f"mesh.axes {axes} must be distinct names from {MESH_AXES}")
    if sum(1 for s in shape if s == -1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ConfigError(f"mesh.shape {shape}: sizes must be positive, with at most one -1")
    fixed = math.prod(s for s in shape if s != -1)
    if num_devices % fixed:
        raise ConfigError(f"mesh.shape {shape} does not fit {num_devices} devices")
    resolved = tuple(num_devices // fixed if s == -1 else s for s in shape)
    if math.prod(resolved) != num_devices:
        raise ConfigError(
            f"mesh.shape {shape} uses {math.prod(resolved)} devices but {num_devices} are available; "
            "use -1 for one axis to take the rest"
        )
    sizes = dict(zip(axes, resolved))
    return {a: sizes.get(a, 1) for a in MESH_AXES}


def mesh_sizes(config: ConfigDict, num_devices: int) -> dict[str, int]:
    """Resolve ``config.mesh`` (one -1 allowed) against ``num_devices``: ``{'data': n, 'fsdp': m}``."""
    return resolve_mesh_sizes(tuple(config.mesh.shape), tuple(config.mesh.axes), num_devices)


def data_parallel_size(config: ConfigDict, num_devices: int) -> int:
    """How many ways a batch is split across devices (mesh ``data`` x ``fsdp``)."""
    sizes = mesh_sizes(config, num_devices)
    return sizes["data"] * sizes["fsdp"]


def check_eval_batch(config: ConfigDict, field: str, batch_size: int, *, num_devices: int | None, process_count: int) -> None:
    """An evaluation batch (``eval.<field>``) must split evenly over the data-parallel devices and
    the processes; ``num_devices=None`` (not known yet) skips the check."""
    if num_devices is None:
        return
    shards = data_parallel_size(config, num_devices)
    if batch_size % shards or batch_size % process_count:
        raise ConfigError(
            f"eval.{field}={batch_size} must be divisible by the data-parallel size {shards} "
            f"and the process count {process_count}"
        )


def _check_section_keys(config: ConfigDict, reference: ConfigDict, path: str = "") -> None:
    for key, value in config.items():
        if key not in reference:
            close = difflib.get_close_matches(key, list(reference.keys()), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(path + c for c in close)}?)" if close else ""
            raise ConfigError(f"unknown config field {path}{key}{hint}")
        if isinstance(reference[key], ConfigDict) and isinstance(value, ConfigDict):
            _check_section_keys(value, reference[key], path + key + ".")


def _choice(value: str, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


def _positive(value: int, name: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _validate_optim(o: ConfigDict, name: str) -> None:
    _check_section_keys(o, optim_config(), name + ".")
    _choice(o.name, OPTIMIZERS, f"{name}.name")
    _choice(o.schedule, SCHEDULES, f"{name}.schedule")
    if o.lr <= 0:
        raise ConfigError(f"{name}.lr must be > 0, got {o.lr}")
    for item in o.lr_multipliers:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigError(f"{name}.lr_multipliers entries must be (regex, multiplier), got {item!r}")
    if o.restart_weights and o.restart_periods and len(o.restart_weights) != len(o.restart_periods):
        raise ConfigError(f"{name}.restart_weights and {name}.restart_periods must have the same length")


def validate(
    config: ConfigDict,
    *,
    num_devices: int | None = None,
    process_count: int = 1,
    sources: Mapping[str, Any] | None = None,
    builders: Mapping[str, Any] | None = None,
) -> ConfigDict:
    """Check the engine's sections; raise :class:`ConfigError` with a fix-it message. Returns the config.

    ``num_devices`` (the global device count) enables the mesh and batch-divisibility checks. The
    method's own sections are checked by its ``Method.validate`` (``Method.check_config`` runs both).
    ``sources`` / ``builders`` (the method's own, added to the generic ones of ``input_pipelines``;
    ``Method.check_config`` passes them) enable the checks of ``data.source`` / ``data.builder``
    names and arguments.
    """
    _check_section_keys(config, _reference_config(config))
    if isinstance(config.get("data"), ConfigDict):
        from input_pipelines.config import validate_data_config  # the data package owns its schema

        validate_data_config(config.data, sources=sources, builders=builders)
    if not config.method:
        raise ConfigError("config.method is empty; a method config must set it (e.g. 'baseline_sr')")
    t = config.train
    _choice(t.step_kind, STEP_KINDS, "train.step_kind")
    _choice(t.nan_policy, NAN_POLICIES, "train.nan_policy")
    _choice(t.compute_dtype, COMPUTE_DTYPES, "train.compute_dtype")
    _positive(t.num_steps, "train.num_steps")
    _positive(t.global_batch_size, "train.global_batch_size")
    _positive(t.grad_accum_steps, "train.grad_accum_steps")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    for key in ["optim"] + [k for k in config.keys() if k.startswith("optim_")]:
        o = config[key]
        _validate_optim(o, key)
        if o.warmup_steps < 0 or (o.schedule != "constant" and o.warmup_steps >= t.num_steps):
            raise ConfigError(
                f"{key}.warmup_steps={o.warmup_steps} must be in [0, train.num_steps={t.num_steps}) for the "
                f"{o.schedule!r} schedule; lower it (e.g. --config.{key}.warmup_steps=0) or train longer"
            )
    if t.step_kind == "gan":
        _choice(config.gan.loss, ("ns", "hinge"), "gan.loss")
        _positive(config.gan.d_steps_per_step, "gan.d_steps_per_step")
        _positive(config.gan.g_every, "gan.g_every")
    if t.step_kind == "contrastive":
        if t.grad_accum_steps != 1:
            raise ConfigError("train.grad_accum_steps must be 1 for the contrastive step (the queue needs whole batches)")
        if config.contrastive.queue_size % t.global_batch_size:
            raise ConfigError(
                f"contrastive.queue_size={config.contrastive.queue_size} must be a multiple of "
                f"train.global_batch_size={t.global_batch_size}"
            )
    _choice(config.checkpoint.best_mode, ("max", "min"), "checkpoint.best_mode")
    _positive(config.checkpoint.every_steps, "checkpoint.every_steps")
    _positive(config.checkpoint.keep_last, "checkpoint.keep_last")
    _positive(config.log.every_steps, "log.every_steps")
    _positive(config.log.image_every_steps, "log.image_every_steps", allow_zero=True)
    _positive(config.eval.every_steps, "eval.every_steps", allow_zero=True)
    for rule in config.sharding.rules:
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)):
            raise ConfigError(f"sharding.rules entries must be (regex, spec), got {rule!r}")

    if t.global_batch_size % t.grad_accum_steps:
        raise ConfigError(
            f"train.global_batch_size={t.global_batch_size} is not divisible by "
            f"train.grad_accum_steps={t.grad_accum_steps}"
        )
    if t.global_batch_size % process_count:
        raise ConfigError(
            f"train.global_batch_size={t.global_batch_size} is not divisible by the {process_count} processes"
        )
    if num_devices is not None:
        shards = data_parallel_size(config, num_devices)
        micro = t.global_batch_size // t.grad_accum_steps
        if micro % shards:
            raise ConfigError(
                f"the (micro)batch of {micro} examples (train.global_batch_size={t.global_batch_size} / "
                f"train.grad_accum_steps={t.grad_accum_steps}) is not divisible by the data-parallel size "
                f"{shards} (mesh data x fsdp); change the batch size or mesh.shape"
            )
    return config


def _reference_config(config: ConfigDict) -> ConfigDict:
    """Keys a config may have: the engine sections plus any method-owned top-level sections."""
    ref = base_config()
    for key, value in config.items():
        if key not in ref and (key in ("model", "loss", "data", "eval_data") or key.startswith("optim_")):
            ref[key] = value  # method-owned: checked by the method's own validate hook
    # evaluation protocols own their sections eval.<protocol> (checked by the protocol)
    if "eval" in config:
        for name, value in config.eval.items():
            if name not in ref.eval and isinstance(value, ConfigDict):
                ref.eval[name] = value
    return ref


__all__ = [
    "ConfigError",
    "apply_overrides",
    "base_config",
    "check_eval_batch",
    "fill_sections",
    "data_parallel_size",
    "mesh_sizes",
    "resolve_mesh_sizes",
    "ml_collections",
    "optim_config",
    "parse_arg",
    "parse_override_args",
    "validate",
]
