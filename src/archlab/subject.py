"""One resolver: what a user names as "the model" turned into what it is.

A subject is given as one of::

    an nn.Module                 used as it is                                  kind "module"
    mlp_tabular                  a registry name                                kind "registry"
    nets.py:Net, pkg.nets:build  a Python file or module and an attribute in it kind "python"
    runs/iris-mlp                a training run directory (config.yaml)         kind "run"
    designs/iris                 a design directory (design.json)               kind "design"
    saved/mlp                    a saved model (config.json, model.safetensors) kind "saved"
    exports/mlp                  an export folder (signature.json, model.onnx)  kind "export"

:func:`resolve_subject` only looks (directory markers, the registry, the attribute of an
imported module); building the network is asked of the :class:`Subject`: :meth:`Subject.build`
from its config (no weights, any device, config overrides) or :meth:`Subject.load` with its
trained weights. An export folder holds a graph, not an ``nn.Module``: it is identified here and
loaded by the deploy layer. A design directory stands for its winner's run (:meth:`Subject.winner`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from archlab.errors import CheckpointError, ConfigError
from archlab.rundir import DesignDir, FinalWeights, RunDir, final_weights

Kind = Literal["module", "registry", "python", "run", "design", "saved", "export"]

#: ``file.py:attr`` or ``package.module:attr`` (attr may be dotted: ``Outer.build``)
_PYTHON_PATH = re.compile(r"^(?P<where>.+\.py|[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)$")
_DIRECTORIES = (
    "a run directory (config.yaml), a design directory (design.json), "
    "a saved model (config.json) nor an export folder (signature.json)"
)
EXPECTED = "expected a registry name, a run directory or a saved model"


@dataclass
class Subject:
    """What a user named, resolved: its kind, where it is, and how to build its network.

    Attributes:
        kind: what it is (see the module docstring).
        given: what was given, as text (``<Net module>`` for a module) for messages.
        path: the directory (run, design, saved, export) or the Python file, else None.
        name: the registry name (kind "registry"), else None.
        module: the module (kinds "module" and "python"), else None.
        design: for a design's winner (see :meth:`winner`), the design directory.
    """

    kind: Kind
    given: str
    path: Path | None = None
    name: str | None = None
    module: nn.Module | None = None
    design: Path | None = None
    _run_config: dict[str, Any] | None = field(default=None, repr=False)

    # -------------------------------------------------------------------------- facts
    def run_config(self) -> dict[str, Any]:
        """A run's ``config.yaml`` (read once).

        Raises:
            CheckpointError: the file is malformed (see :meth:`archlab.rundir.RunDir.read_config`).
        """
        self._expect("run")
        if self._run_config is None:
            self._run_config = RunDir(self._path).read_config()
        return self._run_config

    def data_info(self) -> dict[str, Any]:
        """A run's ``data_info.json`` (normalisation, class names, vocabulary), or {} when it has
        none or it cannot be read."""
        if self.kind != "run" or not (self._path / RunDir.DATA_INFO).is_file():
            return {}
        try:
            info = json.loads((self._path / RunDir.DATA_INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def final_weights(self, *, strict: bool = False) -> FinalWeights:
        """The checkpoint that answers for a run's final model (see :func:`archlab.rundir.final_weights`).

        Args:
            strict: refuse a fallback (the run's final checkpoint failing its integrity check).

        Raises:
            CheckpointError: no complete checkpoint verifies, or ``strict`` and only a fallback does.
        """
        weights = self.final_weights_or_none()
        if weights is None:
            raise CheckpointError(f"{self.given} has no complete checkpoint (best/ or last/)")
        if strict and weights.is_fallback:
            raise CheckpointError(
                f"{self.given}: the run's final checkpoint {weights.wanted}/ cannot be used "
                f"({weights.fallback_reason}); without --strict (strict=False) {weights.name}/ "
                f"(step {weights.step}) answers instead"
            )
        return weights

    def final_weights_or_none(self) -> FinalWeights | None:
        """:meth:`final_weights`, or None when the run has no complete checkpoint yet."""
        self._expect("run")
        return final_weights(self._path, self.run_config())

    def checkpoint_dir(self) -> Path:
        """The directory holding ``config.json`` + ``model.safetensors``: a saved model's own, or a
        run's final checkpoint."""
        if self.kind == "saved":
            return self._path
        return self.final_weights().path

    def winner(self) -> Subject:
        """A design directory's winner: its trained run, with :attr:`design` set.

        Raises:
            ConfigError: the design has no trained winner yet.
        """
        self._expect("design")
        run = self._path / "winner"
        if not (run / RunDir.CONFIG).is_file():
            raise ConfigError(
                f"design {self._path} has no trained winner yet; finish it: archlab design --resume {self._path}"
            )
        return Subject("run", str(run), path=run, design=self._path)

    # -------------------------------------------------------------------------- networks
    def build(self, device: str = "cpu", overrides: dict[str, Any] | None = None) -> nn.Module:
        """A fresh network from the subject's config (untrained: no weights are read).

        A registry name is built with ``overrides``; a saved model or a run from the config it
        saved, ``overrides`` applied on top; a module (or a Python attribute) is returned as it is.

        Raises:
            ConfigError: overrides given for a module, or the subject holds no network.
            CheckpointError: the saved config is missing or malformed.
        """
        from archlab.registry import create, create_from_config

        if self.kind == "registry":
            return create(str(self.name), device=device, **(overrides or {}))
        if self.kind in ("saved", "run"):
            from archlab.checkpoint import read_config

            meta = read_config(self.checkpoint_dir())
            config = {**meta["config"], **(overrides or {})}
            return create_from_config({"model": meta["model"], "config": config}, device=device)
        return self._own_module(overrides)

    def load(self, device: str = "cpu", *, model: nn.Module | None = None, strict: bool = False) -> nn.Module:
        """The network with its trained weights: a saved model's, a run's final checkpoint's
        (``strict``: refuse a fallback); a registry name is built fresh, a module returned as it is.

        Args:
            model: for a save of your own ``nn.Module``, a fresh instance to fill (see
                :func:`archlab.checkpoint.load`).

        Raises:
            CheckpointError: no complete checkpoint, or files that do not load.
            ConfigError: the subject holds no network (a design directory, an export folder).
        """
        from archlab.checkpoint import load

        if self.kind in ("saved", "run"):
            return load(self.checkpoint_dir(), device=device, model=model)
        if self.kind == "registry":
            return self.build(device)
        return self._own_module(None)

    def _own_module(self, overrides: dict[str, Any] | None) -> nn.Module:
        if self.kind == "design":
            raise ConfigError(f"{self.given} is a design directory; {EXPECTED} (its winner: {self._path / 'winner'})")
        if self.kind == "export":
            raise ConfigError(
                f"{self.given} is an export folder (a graph, not an nn.Module); {EXPECTED} "
                "(serve the folder with its server.py)"
            )
        if overrides:
            raise ConfigError("config overrides (--set) apply to registry names and run directories, not modules")
        assert self.module is not None  # kinds "module" and "python"
        return self.module

    @property
    def _path(self) -> Path:
        assert self.path is not None, self.kind
        return self.path

    def _expect(self, kind: Kind) -> None:
        if self.kind != kind:
            raise ConfigError(f"expected a {kind} directory; got {self.given} (a {self.kind})")


def resolve_subject(value: Any, *, follow_design: bool = False) -> Subject:
    """What ``value`` names (see the module docstring); ``follow_design``: a design directory
    resolves to its winner's run (:meth:`Subject.winner`).

    Raises:
        ConfigError: nothing of that name or path, naming what was given and what is expected;
            an unknown registry name names the closest ones.
    """
    if isinstance(value, nn.Module):
        return Subject("module", f"<{type(value).__name__} module>", module=value)
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(
            "expected an nn.Module, a registry name, a Python attribute (file.py:attr or module:attr) "
            f"or a run, design, saved-model or export directory; got {type(value).__name__}"
        )
    text = str(value)
    path = Path(text).expanduser()
    if path.is_dir():
        subject = _directory(path, text)
        return subject.winner() if follow_design and subject.kind == "design" else subject
    match = _PYTHON_PATH.match(text) if isinstance(value, str) and not path.exists() else None
    if match is not None:
        return Subject("python", text, path=_python_file(match["where"]), module=_python_attr(text, match))
    if isinstance(value, os.PathLike) or os.sep in text or text.startswith((".", "~")):
        what = "no such file or directory" if not path.exists() else "not a saved model or run directory"
        raise ConfigError(f"{text}: {what} ({EXPECTED})")
    from archlab.registry import get_entry

    get_entry(text)  # an unknown name raises with the closest names
    return Subject("registry", text, name=text)


def resolve_run(value: str | os.PathLike) -> Subject:
    """A run directory, taken at its word: reading its config says what is missing (a
    :class:`CheckpointError`, as for any malformed run file)."""
    return Subject("run", str(value), path=Path(value))


def _directory(path: Path, given: str) -> Subject:
    if (path / DesignDir.MANIFEST).is_file():
        return Subject("design", given, path=path)
    if (path / RunDir.CONFIG).is_file():
        return Subject("run", given, path=path)
    if (path / "config.json").is_file():
        return Subject("saved", given, path=path)
    if (path / "signature.json").is_file() and any(path.glob("model.*")):
        return Subject("export", given, path=path)
    raise ConfigError(f"{path} is neither {_DIRECTORIES}")


def _python_file(where: str) -> Path | None:
    return Path(where).expanduser() if where.endswith(".py") else None


def _python_attr(text: str, match: re.Match[str]) -> nn.Module:
    """The module named by ``file.py:attr`` / ``module:attr``: the attribute itself when it is an
    ``nn.Module``, else what calling it with no arguments returns (a class or a builder)."""
    where, attr = match["where"], match["attr"]
    try:
        owner = _import_file(Path(where).expanduser()) if where.endswith(".py") else importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as exc:  # the user's code: whatever it raises, say where
        raise ConfigError(f"{text}: importing {where} failed ({type(exc).__name__}: {exc}); {EXPECTED}") from None
    obj: Any = owner
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{text}: {where} has no attribute {part!r}; expected file.py:attr or module:attr")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise ConfigError(f"{text}: expected an nn.Module, a class or a builder; got {type(obj).__name__}")
    try:
        built = obj()
    except Exception as exc:  # the user's constructor
        raise ConfigError(f"{text}: {attr}() failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(built, nn.Module):
        raise ConfigError(f"{text}: expected {attr}() to return an nn.Module; got {type(built).__name__}")
    return built


def _import_file(path: Path) -> Any:
    """Import a Python file by path under a name of its own (re-imported if it changed name)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file ({EXPECTED}, or file.py:attr)")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"archlab_subject_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: not an importable Python file; expected file.py:attr")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so classes defined there pickle-free reload (checkpoint.rebuild_module)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
