"""archlab's typed errors.

Every error says what was expected and what was received, naming the parameter, so a user can
fix the call without reading a traceback from deep inside a library.
"""

from __future__ import annotations

from types import ModuleType


class ArchlabError(Exception):
    """Base class of every error archlab raises on purpose."""


class ConfigError(ArchlabError, ValueError):
    """A config value, key, override or model name is wrong."""


class ShapeError(ArchlabError, ValueError):
    """A tensor given to a model (or a task) does not have the shape, dtype or range it needs."""


class DataError(ArchlabError, ValueError):
    """A dataset or data file is missing, malformed, or holds values that cannot be used."""


class CheckpointError(ArchlabError):
    """A saved model or run state is missing, incomplete, corrupt, or does not fit the model."""


class ExportError(ArchlabError):
    """A model could not be exported (ONNX, torch.export) or its export does not match eager;
    the message names the module, the op and the exporter's reason."""


class MissingExtraError(ArchlabError, ImportError):
    """An optional dependency is not installed; the message names the pip extra to install."""


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import an optional dependency or raise MissingExtraError naming the extra.

    Args:
        module: importable module name, e.g. ``"sklearn"``.
        extra: archlab extra that installs it, e.g. ``"data"``.
        purpose: what needs it, for the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        what = f" for {purpose}" if purpose else ""
        raise MissingExtraError(
            f"{module!r} is needed{what} but is not installed; install it with: pip install 'archlab[{extra}]'"
        ) from exc
