"""The model registry: every architecture archlab can build, with its capabilities.

A family file registers named presets::

    register(
        "resnet18", family="resnet", model=ResNet, config=ResNetConfig,
        defaults=dict(block="basic", layers=[2, 2, 2, 2]),
        modalities=("image",), tasks=("classification",),
        description="ResNet-18 (He et al. 2015)",
        when_to_use="Images (classification): strong, well-understood baseline",
    )

``create("resnet18", num_classes=10)`` validates defaults + overrides into the config and builds
the model. A duplicate name raises; an unknown name suggests the closest ones.

Models from outside archlab register the same way (``register`` also decorates a class, see its
docstring). The CLI sees them when their module is imported with ``archlab --plugin MODULE``, or
when an installed package names the module in the entry-point group ``archlab.plugins``
(``[project.entry-points."archlab.plugins"] mine = "mypkg.models"``); those are imported the
first time the registry is used, and one that fails to import is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import functools
import importlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlab import capabilities
from archlab.config import ArchConfig
from archlab.errors import ConfigError

log = logging.getLogger(__name__)

#: entry-point group of installed packages that register models (imported on first registry use)
PLUGIN_GROUP = "archlab.plugins"

# Family modules imported on first use of the registry, so registration happens exactly once.
FAMILY_MODULES = (
    "mlp",
    "cnn",
    "resnet",
    "unet",
    "rnn",
    "tcn",
    "transformer",
    "vit",
    "gnn",
    "siamese",
    "recsys",
    "autoencoder",
    "vae",
    "gan",
    "diffusion",
    "flow",
    "ssm",
    "linear_forecaster",
    "nbeats",
    "inception_time",
    "rocket",
    "ft_transformer",
    "tabular_resnet",
    "fasttext",
    "hf",  # Hugging Face encoders; transformers is imported only when one is built
)


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture and what it is for."""

    name: str
    family: str
    model: type[nn.Module]
    config: type[ArchConfig]
    defaults: dict[str, Any] = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    description: str = ""
    when_to_use: str = ""
    #: scaling knobs for auto-sizing: config field -> role ("width", "depth", "resolution", ...)
    knobs: dict[str, str] = field(default_factory=dict)

    def make_config(self, overrides: dict[str, Any] | None = None) -> ArchConfig:
        return self.config.build({**self.defaults, **(overrides or {})})

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "modalities": list(self.modalities),
            "tasks": list(self.tasks),
            "config": self.config.__name__,
            "description": self.description,
            "when_to_use": self.when_to_use,
            "knobs": dict(self.knobs),
        }


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register(
    name: str,
    *,
    family: str,
    model: type[nn.Module] | None = None,
    config: type[ArchConfig],
    defaults: dict[str, Any] | None = None,
    modalities: Iterable[str] = (),
    tasks: Iterable[str] = (),
    description: str = "",
    when_to_use: str = "",
    knobs: dict[str, str] | None = None,
) -> Any:
    """Register a named preset; without ``model``, a class decorator that registers the class.

    Your own architecture then works everywhere a preset does: ``archlab.fit("my_mlp", data)``
    adapts it to the data (config fields named like ``in_features``, ``num_classes``,
    ``in_channels`` are filled from it), ``summary``, ``bench``, ``export``, save and load; on
    the command line after ``archlab --plugin mymodels`` (the module holding this code)::

        import torch
        from torch import nn

        import archlab
        from archlab.config import ArchConfig


        class MyMLPConfig(ArchConfig):
            in_features: int = 4
            num_classes: int = 3
            hidden: int = 64


        @archlab.register("my_mlp", family="mine", config=MyMLPConfig,
                          modalities=("tabular",), tasks=("classification",),
                          description="two-layer MLP", knobs={"hidden": "width"})
        class MyMLP(nn.Module):
            def __init__(self, config: MyMLPConfig):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(config.in_features, config.hidden), nn.ReLU(),
                                         nn.Linear(config.hidden, config.num_classes))

            def forward(self, x):  # (B, in_features) -> (B, num_classes)
                return self.net(x)

            def example_input(self, batch_size: int = 2):
                return (torch.randn(batch_size, self.config.in_features),)

    The model class takes its config as its one argument; ``archlab.create`` sets ``.config``.
    ``modalities`` and ``tasks`` are words of :mod:`archlab.capabilities` (an unknown word
    raises); ``knobs`` names the config fields that scale the model (see :mod:`archlab.advise`).

    Returns:
        The :class:`ModelEntry`, or (without ``model``) the decorator, which returns the class.

    Raises:
        ConfigError: ``name`` is taken, or a modality / task is not in the vocabulary.
    """
    make_entry = functools.partial(
        ModelEntry,
        name=name,
        family=family,
        config=config,
        defaults=dict(defaults or {}),
        modalities=tuple(modalities),
        tasks=tuple(tasks),
        description=description,
        when_to_use=when_to_use,
        knobs=dict(knobs or {}),
    )
    if model is None:

        def decorate(cls: type[nn.Module]) -> type[nn.Module]:
            _add(make_entry(model=cls))
            return cls

        return decorate
    return _add(make_entry(model=model))


def _add(entry: ModelEntry) -> ModelEntry:
    """Store ``entry`` under a free name, its modalities and tasks checked against the vocabulary."""
    if entry.name in _REGISTRY:
        raise ConfigError(f"model name {entry.name!r} is already registered (family {_REGISTRY[entry.name].family!r})")
    mods = tuple(dict.fromkeys(capabilities.modality(m) for m in entry.modalities))
    tks = tuple(dict.fromkeys(capabilities.task(t) for t in entry.tasks))
    entry = dataclasses.replace(entry, modalities=mods, tasks=tks)
    _REGISTRY[entry.name] = entry
    return entry


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in FAMILY_MODULES:
        importlib.import_module(f"archlab.models.{mod}")
    load_entry_point_plugins()


def load_entry_point_plugins() -> list[str]:
    """Import the modules installed packages name in the ``archlab.plugins`` entry-point group.

    Returns:
        The names of the entry points imported; one that fails is skipped with a warning.
    """
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party package must not break archlab
            log.warning("plugin %r (%s) skipped: %s: %s", ep.name, ep.value, type(exc).__name__, exc)
            continue
        loaded.append(ep.name)
    return loaded


def load_plugin(module: str) -> None:
    """Import ``module`` (``archlab --plugin MODULE``) so the models it registers are listed.

    Raises:
        ConfigError: the module cannot be imported, naming it and why.
    """
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"--plugin {module!r}: expected an importable module (on PYTHONPATH or installed); "
            f"got {type(exc).__name__}: {exc}"
        ) from None


def get_entry(name: str) -> ModelEntry:
    """The entry for ``name``; an unknown name raises with the closest matches."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}{hint} (see `archlab models` for all {len(_REGISTRY)};"
            " a model of your own needs --plugin MODULE)"
        ) from None


def model_info(name: str) -> ModelEntry:
    """Capabilities and defaults of a registered model."""
    return get_entry(name)


#: Presets whose training step ``torch.func.vmap`` runs, so a group of their runs (``--seeds``,
#: ``--cv``) can train as one stack (:mod:`archlab.train.stacked`). Found by
#: :func:`archlab.runs.stacked.preset_stacks` (one vmapped step of two copies on the preset's
#: example input); tests/test_stacked_registry.py checks the set against that probe. The others
#: stop vmap with data-dependent checks of integer inputs (token and graph models) or an op
#: without a batching rule; their groups train one at a time. A run still probes its own model.
STACKABLE_PRESETS = frozenset(
    {
        "dlinear",
        "nlinear",
        "nbeats_generic",
        "nbeats_interpretable",
        "inception_time",
        "minirocket",
        "ft_transformer",
        "ft_transformer_small",
        "tabular_resnet",
        "autoencoder_784_128",
        "autoencoder_784_128_64",
        "autoencoder_digits",
        "cnn1d_mnist1d",
        "cnn_bn_cifar",
        "cnn_digits",
        "cnn_lenet_cifar",
        "cnn_simple_mnist",
        "conv_autoencoder",
        "dcgan",
        "gan_linear",
        "gan_mlp",
        "gan_mlp_mnist",
        "gru_mnist1d",
        "longconv_classifier",
        "lstm_classifier",
        "lstm_net",
        "lstm_sine_forecaster",
        "mamba_classifier",
        "mlp_784_128_10",
        "mlp_bn_dropout",
        "mlp_regressor",
        "mlp_tabular",
        "resnet18",
        "resnet18_cifar",
        "resnet1d",
        "resnet1d_mnist1d",
        "resnet20_cifar",
        "resnet34",
        "resnet34_seed004",
        "resnet50",
        "siamese_cnn_digits",
        "siamese_mlp_digits",
        "ssm_forecaster",
        "ssm_s4d_classifier",
        "tcn_classifier",
        "tcn_forecaster",
        "tcn_tiny",
        "tiny_resnet",
        "unet",
        "unet_small",
        "vae_conv",
        "vae_digits",
        "vae_mlp",
        "vit_b16",
        "vit_tiny",
    }
)


def stackable(name: str) -> bool:
    """Whether registered preset ``name`` trains in a stack (see :data:`STACKABLE_PRESETS`)."""
    return get_entry(name).name in STACKABLE_PRESETS


def list_models(
    pattern: str | None = None,
    family: str | None = None,
    modality: str | None = None,
    task: str | None = None,
) -> list[str]:
    """Names of registered models, sorted; each filter is a glob pattern (``"*resnet*"``).

    A ``modality`` or ``task`` without glob characters is a vocabulary word (synonyms such as
    ``"signal"`` or ``"language-modeling"`` are accepted; an unknown word raises ConfigError).
    """
    _ensure_loaded()
    if modality is not None and not _is_glob(modality):
        modality = capabilities.modality(modality)
    if task is not None and not _is_glob(task):
        task = capabilities.task(task)

    def match(value: str | Iterable[str], pat: str | None) -> bool:
        if pat is None:
            return True
        values = [value] if isinstance(value, str) else list(value)
        return any(fnmatch.fnmatch(v, pat) for v in values)

    return sorted(
        e.name
        for e in _REGISTRY.values()
        if match(e.name, pattern) and match(e.family, family) and match(e.modalities, modality) and match(e.tasks, task)
    )


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def families() -> list[str]:
    _ensure_loaded()
    return sorted({e.family for e in _REGISTRY.values()})


@contextlib.contextmanager
def _device_ctx(device: str | torch.device | None) -> Iterator[None]:
    if device is None:
        yield
    else:
        with torch.device(device):
            yield


def create(name: str, *, device: str | torch.device | None = None, **overrides: Any) -> nn.Module:
    """Build registered model ``name`` with config ``overrides``.

    Args:
        name: a name from :func:`list_models`.
        device: build directly on this device; ``"meta"`` allocates no memory, so configs far
            too large for this machine can still be analysed.
        **overrides: config fields that replace the preset's defaults.
    """
    entry = get_entry(name)
    config = entry.make_config(overrides)
    return _build(entry, config, device)


def _build(entry: ModelEntry, config: ArchConfig, device: str | torch.device | None) -> nn.Module:
    with _device_ctx(device):
        model: nn.Module = entry.model(config)
    # plain attributes, not submodules: setattr keeps nn.Module's typed __setattr__ out of the way
    setattr(model, "config", config)  # noqa: B010
    setattr(model, "registry_name", entry.name)  # noqa: B010
    return model


def create_from_config(
    config: ArchConfig | dict[str, Any], *, name: str | None = None, device: str | torch.device | None = None
) -> nn.Module:
    """Build a model from a config object, or from a ``{"model": name, "config": {...}}`` dict.

    With a config object, ``name`` picks the preset (for its capabilities); without it, the
    first preset registered with that config class and default model class is used.
    """
    if isinstance(config, dict):
        if "model" not in config or "config" not in config:
            raise ConfigError(f"a config dict needs keys 'model' and 'config'; got keys {sorted(config)}")
        entry = get_entry(config["model"])
        return _build(entry, entry.config.build(config["config"]), device)
    if not isinstance(config, ArchConfig):
        raise ConfigError(f"expected an ArchConfig or a dict; got {type(config).__name__}")
    if name is not None:
        entry = get_entry(name)
        if not isinstance(config, entry.config):
            raise ConfigError(f"model {name!r} takes {entry.config.__name__}; got {type(config).__name__}")
        return _build(entry, config, device)
    _ensure_loaded()
    for entry in _REGISTRY.values():
        if type(config) is entry.config:
            return _build(entry, config, device)
    raise ConfigError(f"no registered model takes {type(config).__name__}")


def entry_for_model(model: nn.Module) -> ModelEntry:
    """The registry entry a model was built from (by name, else by config class)."""
    name = getattr(model, "registry_name", None)
    if name is not None:
        return get_entry(name)
    config = getattr(model, "config", None)
    _ensure_loaded()
    for entry in _REGISTRY.values():
        if config is not None and type(config) is entry.config and type(model) is entry.model:
            return entry
    raise ConfigError(f"{type(model).__name__} was not built from the archlab registry (no .config / name)")
