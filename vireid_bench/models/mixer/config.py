"""MixER training configuration: TOML files per dataset, overrides, a stable hash.

A configuration is a nested dict with the sections of :data:`DEFAULTS`. It is built in
layers, each overriding the one before:

1. :data:`DEFAULTS` (the paper's settings, §4.1(c), where the paper gives them);
2. the dataset's file ``configs/<dataset>.toml`` shipped with the package;
3. a user file (``--config PATH``; only the keys it sets change);
4. command-line flags and ``--set section.key=value``.

Unknown sections or keys are rejected with the list of valid ones, so a typo never
silently trains something else. :func:`config_hash` is the first 10 hex digits of the
SHA-256 of the canonical JSON of the resolved configuration; extraction writes it into the
dump's ``model`` attribute.

This module does not import torch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from vireid_bench.errors import VireidBenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DATASETS = ("sysu-mm01", "regdb", "llcm")
BACKBONES = ("resnet50", "resnet34", "resnet18")

DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "backbone": "resnet50",  # paper: ResNet-50
        "last_stride": 1,  # issue: last stride 1 (the field's usual choice)
        "related_branch": True,  # per-modality copies of layer4 -> z_r (False: baseline)
    },
    "input": {
        "height": 288,  # paper: 288 x 144
        "width": 144,
        "pad": 10,  # zero padding before the random crop (not stated in the paper)
        "flip_p": 0.5,
        "erasing_p": 0.5,  # random erasing filled with the mean pixel
        "channel_exchange_p": 0.2,  # visible only: all channels <- one random channel
        "grayscale_p": 0.1,  # visible only
    },
    "sampler": {
        "batch_ids": 10,  # paper: 10 identities per batch
        "num_pos": 4,  # images per identity and modality (issue: 10 x (4 + 4))
        "iters_per_epoch": 0,  # 0: max(#visible, #infrared) / (batch_ids * num_pos)
    },
    "optim": {
        "lr": 0.0004,  # paper
        "weight_decay": 0.0005,  # not stated in the paper
        "epochs": 180,  # paper
        "warmup_epochs": 10,  # paper: "linear warm-up", length not stated
        "milestones": [80, 120],  # paper: x0.1 at 80, x0.01 at 120
        "gamma": 0.1,
    },
    "loss": {
        "meid": True,  # eq. 9: identity cross-entropy on z_e
        "cc_e": True,  # eq. 10: center-cluster loss on z_e with Y
        "mrid": True,  # eq. 13: cross-entropy on z_r over the 2C labels Y' (eq. 12)
        "cc_r": True,  # eq. 14: center-cluster loss on z_r with Y'
        "ortho": True,  # eq. 7: |cos(z_e, z_r)|
        "modality": True,  # eq. 11: modality classifier on z_e through a GRL
        "fusion": True,  # eq. 15: mixed cross-modal triplet on z_f / z_e
        "w_meid": 1.0,
        "w_cc_e": 1.0,
        "w_mrid": 1.0,
        "w_cc_r": 1.0,
        "lambda_m": 0.5,  # eq. 16 weights: values not stated in the paper
        "lambda_o": 1.0,
        "lambda_f": 1.0,
        "cc_margin": 0.7,  # center-cluster margin (MPANet's SYSU value)
        "fusion_margin": 0.3,  # alpha of eq. 15 (not stated in the paper)
        "grl_coeff": 1.0,  # gradient-reversal factor
    },
    "train": {
        "seed": 0,
        "workers": 2,
        "amp": True,  # mixed precision, CUDA only
        "channels_last": True,  # CUDA only
        "log_every": 10,
        "keep_every": 0,  # also keep weights of every k-th epoch (0: only last.pt)
        # the data path and compilation (RUNTIME_KEYS: not part of the config hash)
        "prefetch_factor": 2,  # batches each loader worker prepares ahead (workers > 0)
        "cache_images": False,  # keep decoded images in memory (small datasets)
        "cache_limit_mb": 1024,  # the cache's size limit, MiB of decoded pixels
        "compile": False,  # torch.compile the model for training
        "compile_backend": "inductor",  # torch.compile backend
    },
}

RUNTIME_KEYS: dict[str, tuple[str, ...]] = {
    "train": ("prefetch_factor", "cache_images", "cache_limit_mb", "compile", "compile_backend"),
}
"""Keys that change how fast a run goes, not what it trains: left out of
:func:`config_hash` (so the hashes of earlier runs stay valid) and free to change on
``--resume``. ``compile`` changes results at most by floating-point reassociation."""


class MixerInputError(VireidBenchError):
    """An input of the MixER commands is unusable (checkpoint, weights, device, config).

    The message is one line naming the file or option at fault; the CLI exits with code 2.
    """


class ConfigError(MixerInputError):
    """A configuration file or override is malformed."""


def _merge(base: dict[str, dict[str, Any]], update: Mapping[str, Any], source: str) -> None:
    """Merge ``update`` into ``base`` in place, rejecting unknown sections and keys."""
    for section, values in update.items():
        if section not in DEFAULTS:
            raise ConfigError(
                f"{source}: unknown section [{section}] (valid: {', '.join(DEFAULTS)})"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key} "
                    f"(valid: {', '.join(sorted(DEFAULTS[section]))})"
                )
            default = DEFAULTS[section][key]
            if isinstance(default, bool) and not isinstance(value, bool):
                raise ConfigError(f"{source}: {section}.{key} must be true or false")
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if type(default) is not type(value):
                raise ConfigError(
                    f"{source}: {section}.{key} must be {type(default).__name__}, got {value!r}"
                )
            base[section][key] = copy.deepcopy(value)


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc


def dataset_config_text(dataset: str) -> str:
    """Return the text of the packaged ``configs/<dataset>.toml``."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r} (valid: {', '.join(DATASETS)})")
    return (
        resources.files("vireid_bench.models.mixer.configs")
        .joinpath(f"{dataset}.toml")
        .read_text(encoding="utf-8")
    )


def packaged_configs() -> list[str]:
    """Names of the configuration files shipped in ``vireid_bench/models/mixer/configs``."""
    folder = resources.files("vireid_bench.models.mixer.configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _user_config_text(config_path: str | Path) -> tuple[str, str]:
    """Read ``--config``: a TOML file, or the name of a packaged one (``synth-small``)."""
    path = Path(config_path)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    name = str(config_path).removesuffix(".toml")
    if name in packaged_configs():
        folder = resources.files("vireid_bench.models.mixer.configs")
        return folder.joinpath(f"{name}.toml").read_text(encoding="utf-8"), f"{name}.toml"
    raise ConfigError(
        f"{config_path}: config file not found (packaged: {', '.join(packaged_configs())})"
    )


def parse_override(text: str) -> dict[str, dict[str, Any]]:
    """Parse ``section.key=value`` (value in TOML syntax; bare words are strings)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    name, raw = text.split("=", 1)
    section, key = name.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {key: value}}


def load_config(
    dataset: str,
    config_path: str | Path | None = None,
    overrides: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...] = (),
) -> dict[str, dict[str, Any]]:
    """Resolve a configuration: defaults <- dataset file <- user file <- overrides."""
    config = copy.deepcopy(DEFAULTS)
    _merge(config, _read_toml(dataset_config_text(dataset), f"{dataset}.toml"), f"{dataset}.toml")
    if config_path is not None:
        text, source = _user_config_text(config_path)
        _merge(config, _read_toml(text, source), source)
    for override in overrides:
        _merge(config, override, "override")
    validate(config)
    return config


def validate(config: Mapping[str, Mapping[str, Any]]) -> None:
    """Check value ranges that TOML types cannot express."""
    model, inp, sampler, optim = (config[s] for s in ("model", "input", "sampler", "optim"))
    if model["backbone"] not in BACKBONES:
        raise ConfigError(
            f"model.backbone {model['backbone']!r} unknown (valid: {', '.join(BACKBONES)})"
        )
    if model["last_stride"] not in (1, 2):
        raise ConfigError("model.last_stride must be 1 or 2")
    if inp["height"] < 16 or inp["width"] < 8:
        raise ConfigError("input.height/width must be at least 16/8")
    if sampler["batch_ids"] < 2 or sampler["num_pos"] < 1:
        raise ConfigError("sampler.batch_ids must be >= 2 and sampler.num_pos >= 1")
    if optim["epochs"] < 1 or optim["lr"] <= 0:
        raise ConfigError("optim.epochs must be >= 1 and optim.lr > 0")
    train = config["train"]
    if train["workers"] < 0 or train["prefetch_factor"] < 1:
        raise ConfigError("train.workers must be >= 0 and train.prefetch_factor >= 1")
    if train["cache_limit_mb"] < 1:
        raise ConfigError("train.cache_limit_mb must be >= 1")
    if not train["compile_backend"]:
        raise ConfigError("train.compile_backend must name a torch.compile backend")
    if not model["related_branch"]:
        for term in ("mrid", "cc_r", "ortho", "fusion"):
            if config["loss"][term]:
                raise ConfigError(
                    f"loss.{term} needs z_r: set model.related_branch = true or loss.{term} = false"
                )


def without_runtime_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` without the :data:`RUNTIME_KEYS`."""
    return {
        section: {
            key: value
            for key, value in values.items()
            if key not in RUNTIME_KEYS.get(section, ())
        }
        for section, values in config.items()
    }


def config_hash(config: Mapping[str, Any]) -> str:
    """First 10 hex digits of the SHA-256 of the configuration's canonical JSON.

    The :data:`RUNTIME_KEYS` (data path, compilation) are left out.
    """
    text = json.dumps(without_runtime_keys(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def to_toml(config: Mapping[str, Mapping[str, Any]]) -> str:
    """Write a resolved configuration back as TOML (for the run directory)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)
