"""Finding and loading diffusers components from a hub id or a local folder, with clear errors.

A repository is either a pipeline folder (``model_index.json`` + one subfolder per component,
e.g. ``CompVis/ldm-celebahq-256``) or a single model at its root (``config.json`` +
``scheduler_config.json``, e.g. ``google/ddpm-ema-church-256``). The layout is probed once, so
that a missing component costs no extra round of network retries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import PriorLoadError


def _looks_like_path(source: str) -> bool:
    """Hub ids are 'name' or 'owner/name'; anything else is meant as a folder."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def read_layout(source: str, revision: str | None = None, cache_dir: str | None = None) -> dict | None:
    """The parsed ``model_index.json`` of ``source``, or None for a single-model (root) layout."""
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        index = path / "model_index.json"
        return json.loads(index.read_text()) if index.is_file() else None
    if path.exists() or _looks_like_path(source):
        raise PriorLoadError(f"prior folder {source!r} does not exist")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        index = hf_hub_download(source, "model_index.json", revision=revision, cache_dir=cache_dir)
    except LocalEntryNotFoundError as exc:  # offline or unreachable, and not cached
        raise PriorLoadError(_unreachable(source, exc)) from exc
    except EntryNotFoundError:
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise PriorLoadError(f"unknown model id {source!r} (revision {revision or 'main'}) on the hub") from exc
    except Exception as exc:  # connection errors and the like
        raise PriorLoadError(_unreachable(source, exc)) from exc
    return json.loads(Path(index).read_text())


def _unreachable(source: str, exc: Exception) -> str:
    return (f"model {source!r} is not a local folder, is not in the Hugging Face cache, and could not be "
            f"downloaded ({type(exc).__name__}); download it on a connected machine or pass a local folder")


def component_subfolder(layout: dict | None, names: tuple[str, ...], what: str, source: str) -> str | None:
    """The subfolder holding the first of ``names`` present in the layout (None = repository root)."""
    if layout is None:
        return None
    for name in names:
        if name in layout:
            return name
    raise PriorLoadError(f"{source!r} has no {what} component (looked for {', '.join(names)}; it has "
                         f"{', '.join(k for k in layout if not k.startswith('_'))})")


def component_class(layout: dict | None, subfolder: str | None) -> str | None:
    """Class name of a component as model_index.json records it."""
    if layout is None or subfolder is None:
        return None
    entry = layout.get(subfolder)
    return entry[1] if isinstance(entry, (list, tuple)) and len(entry) == 2 else None


def _accelerate_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def load_component(cls, source: str, subfolder: str | None, **kwargs):
    """``cls.from_pretrained(source, subfolder=...)`` with the error naming the id and the component.

    Low-memory loading is asked for only where ``accelerate`` is installed (diffusers warns otherwise)."""
    import torch

    if issubclass(cls, torch.nn.Module):
        kwargs.setdefault("low_cpu_mem_usage", _accelerate_available())
    try:
        if subfolder is None:
            return cls.from_pretrained(source, **kwargs)
        return cls.from_pretrained(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        where = f"{source!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
        raise PriorLoadError(f"could not load {cls.__name__} from {where}: {str(exc).splitlines()[0]}") from exc
