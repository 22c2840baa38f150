"""Models the package does not ship, by name: ``timm:NAME``, ``hf:LOCAL_DIR`` and
``python:package.module:factory`` (:func:`~smoothstab.experiments.models.architectures.build_model`
dispatches here by prefix).

What of a model name is code, and what is data:

* ``python:MODULE:CALLABLE`` is code: MODULE is imported and CALLABLE called, as a script would
  be. Trust a config that names one as you would trust a script.
* ``hf:LOCAL_DIR`` reads a folder: its ``config.json`` (a regular file of at most
  :data:`HF_CONFIG_LIMIT` bytes, whose label and channel counts are checked against the data
  before transformers builds anything) and its weights, which transformers loads without
  running pickled code. A folder whose ``config.json`` asks for its own Python (``auto_map``) is
  refused unless ``models.trust_remote_code = true``; ``trust_remote_code`` is always passed.
* ``timm:NAME`` builds an architecture of timm's registry, without weights unless its pretrained
  file is given (``weights = "pretrained"``, fetched by ``build_model``).

Downloads go through :mod:`~smoothstab.experiments.models.download` (verified, into the
libraries' caches, refused when offline): ``timm:hf-hub:ORG/NAME`` and ``hf:ORG/NAME`` (a hub id
that is not a local folder) are fetched with their config and weights, then read as local
folders under the rules above. The optional libraries are imported on use; a missing one is one
line naming the extra to install.

Where a ``python:`` module is looked up, one rule for ``smoothstab`` and ``python -m smoothstab``
(whose ``__main__`` takes the working directory off ``sys.path`` first, so both start alike):

1. the config's folder (:class:`ModelCode`'s ``folder``: ``models.code_dir``, by default the
   folder of the config file that names the module; ``smoothstab run`` records it in the run
   directory's ``config.toml``, so a later stage command looks in the same place);
2. the working directory, with one notice line naming the file imported (never silently);
3. the installed packages (``sys.path``).

A module found in one of the two folders is imported with that folder first on ``sys.path`` (as
``python script.py`` puts its own), so it may import its neighbours. A miss names the places
looked in; a module of the same name already imported from another file is refused rather than
silently reused. Every failure -- a name that is no dotted module, a module that cannot be
imported or raises while importing, a factory that is missing, not callable, takes other
arguments, raises anything (``SystemExit`` included) or returns no ``nn.Module`` -- is one
``ValueError`` line naming the spec.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import json
import os
import re
import stat
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from smoothstab.experiments.io.files import first_line, special_kind
from smoothstab.experiments.io.progress import say
from smoothstab.experiments.models import download

HF_CONFIG_LIMIT = 16 << 20  # bytes: a real config.json with 21k labels is about 1 MB


@dataclass(frozen=True)
class ModelCode:
    """Where the models of the command's config may take code from: ``folder``, where
    ``python:`` modules are looked up first (``None``: only the working directory and the
    installed packages), and ``trust_remote_code``, whether an ``hf:`` folder may run its own
    Python."""

    folder: str | None = None
    trust_remote_code: bool = False


_CODE: ContextVar[ModelCode | None] = ContextVar("model_code", default=None)
_NOTICED: set[str] = set()  # modules imported from the working directory, said once each


@contextmanager
def model_code(folder: str | Path | None = None, trust_remote_code: bool = False) -> Iterator[None]:
    """While the block runs, ``python:`` and ``hf:`` names are built by :class:`ModelCode`
    ``(folder, trust_remote_code)`` (a command sets it from its config: ``models.code_dir``,
    ``models.trust_remote_code``)."""
    token = _CODE.set(ModelCode(None if folder is None else str(folder), bool(trust_remote_code)))
    try:
        yield
    finally:
        _CODE.reset(token)


def _code() -> ModelCode:
    """The :class:`ModelCode` of the command (outside :func:`model_code`: no folder)."""
    return _CODE.get() or ModelCode()


def _extra(module: str, extra: str, name: str) -> Any:
    """``import module``, or one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"model: {name} needs {module}; install the extra: pip install 'smoothstab[{extra}]'"
        ) from None


FETCHING_TIMM_SOURCES = ("hf-hub", "hf_hub")  # timm's prefixes that reach the Hugging Face Hub


def _timm(
    name: str, num_classes: int | None, in_channels: int, pretrained: Path | None = None
) -> nn.Module:
    timm = _extra("timm", "timm", f"timm:{name}")
    options: dict[str, Any] = {"pretrained": pretrained is not None, "in_chans": in_channels}
    if pretrained is not None:
        options["pretrained_cfg_overlay"] = {"file": str(pretrained)}
    if num_classes is not None:
        options["num_classes"] = num_classes
    source, sep, repo = name.partition(":")
    if sep and source in FETCHING_TIMM_SOURCES:  # the hub's config and weights, as hf:ORG/NAME
        source = f"local-dir:{download.hf_repo(repo, f'model: timm:{name}')}"
        options["pretrained"] = True
    else:
        source = name
    try:
        return timm.create_model(source, **options)
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise ValueError(f"model: cannot build timm:{name} ({first_line(e)})") from None
        raise ValueError(
            f"model: timm has no model {name!r} (timm.list_models() names them)"
        ) from None
    except (ValueError, TypeError, OSError) as e:
        raise ValueError(f"model: cannot build timm:{name} ({first_line(e)})") from None


def hf_config(
    folder: str, num_classes: int | None, in_channels: int, name: str | None = None
) -> dict:
    """The ``config.json`` of the ``hf:`` folder, read and checked before anything is built: a
    regular file of at most :data:`HF_CONFIG_LIMIT` bytes holding a JSON object whose label and
    channel counts are the data's (``num_classes=None``: the model's own), and no request to
    run the folder's own code unless ``trust_remote_code``. ``name``: the spec's, where the
    folder is a hub model's snapshot."""
    where = f"hf:{name or folder}"
    path = Path(folder) / "config.json"
    try:
        st = os.stat(path)
    except OSError:
        raise ValueError(
            f"model: {where} expected a local Hugging Face model folder with config.json "
            f"(save_pretrained's output), found nothing at {path}"
        ) from None
    kind = special_kind(st.st_mode)
    if kind is not None or not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"model: {where}: {path} is {kind or 'a directory'}, expected the folder's "
            "config.json file"
        )
    if st.st_size > HF_CONFIG_LIMIT:
        raise ValueError(
            f"model: {where}: {path} is {st.st_size:,} bytes, more than a model's config.json "
            f"has (at most {HF_CONFIG_LIMIT >> 20} MiB)"
        )
    try:
        config = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ValueError(f"model: {where}: cannot read {path} as JSON ({first_line(e)})") from None
    if not isinstance(config, dict):
        raise ValueError(f"model: {where}: {path} holds {type(config).__name__}, not an object")
    named = config.get("id2label")  # transformers counts these, or num_labels (default 2)
    counts = [len(named)] if isinstance(named, dict) else []
    if "num_labels" in config:
        counts.append(config["num_labels"])
    labels = next((c for c in counts or [2] if c != num_classes), num_classes)
    channels = config.get("num_channels", in_channels)
    if num_classes is None:  # the data do not say: the model's own labels
        labels = num_classes
    if (labels, channels) != (num_classes, in_channels):
        raise ValueError(
            f"model: {where} has {_count(labels)} labels and {_count(channels)} input channels, "
            f"the data {num_classes} classes and {in_channels} channels"
        )
    if config.get("auto_map") and not _code().trust_remote_code:
        raise ValueError(
            f"model: {where}: its config.json asks to run the folder's own Python (auto_map); "
            "that code runs only with models.trust_remote_code = true (then trust the folder "
            "as a script)"
        )
    return config


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) else repr(value)[:40]


def _hf(folder: str, num_classes: int | None, in_channels: int) -> nn.Module:
    transformers = _extra("transformers", "hf", f"hf:{folder}")
    spec, folder = folder, download.hf_model_folder(folder)  # a hub id: its cached snapshot
    hf_config(folder, num_classes, in_channels, name=spec)
    auto, bars = transformers.AutoModelForImageClassification, transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # a local folder: no download to watch, once per stage
    try:
        model = auto.from_pretrained(
            folder, local_files_only=True, trust_remote_code=_code().trust_remote_code
        )
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a hostile pickle, a bad file, its own code: one line
        raise ValueError(
            f"model: cannot load hf:{spec} ({type(e).__name__}: {first_line(e)})"
        ) from None
    finally:
        if shown:
            bars.enable_progress_bar()
    labels, channels = model.config.num_labels, getattr(model.config, "num_channels", in_channels)
    if (labels, channels) != (num_classes or labels, in_channels):
        raise ValueError(
            f"model: hf:{spec} has {labels} labels and {channels} input channels, the data "
            f"{num_classes} classes and {in_channels} channels"
        )
    return model


DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)


def _python(spec: str, num_classes: int, in_channels: int) -> nn.Module:
    module_name, _, attr = spec.rpartition(":")
    where = f"python:{spec}"
    if not DOTTED.fullmatch(module_name) or not DOTTED.fullmatch(attr) or "." in attr:
        raise ValueError(
            f"model: expected python:package.module:factory (a dotted module name and a "
            f"function name), got {where!r}"
        )
    module = import_module(module_name, where)
    try:
        factory = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"model: {where}: {module_name} has no {attr}") from None
    if not callable(factory):
        raise ValueError(
            f"model: {where}: {module_name}.{attr} is {_kind(factory)}, expected a function "
            "that returns an nn.Module"
        )
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: called without arguments
        params = {}
    given = {"num_classes": num_classes, "in_channels": in_channels}
    try:
        model = factory(**{k: v for k, v in given.items() if k in params and v is not None})
    except KeyboardInterrupt:
        raise
    except SystemExit as e:
        raise ValueError(
            f"model: {where} exited (SystemExit({e.code!r})) instead of returning a model"
        ) from None
    except BaseException as e:  # noqa: BLE001 - the factory's own failure, whatever it is: one line
        raise ValueError(f"model: {where} raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {where} returned {type(model).__name__}, not an nn.Module")
    return model


def _kind(obj: object) -> str:
    if isinstance(obj, types.ModuleType):
        return "a module"
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    return f"a {type(obj).__name__}"


def import_module(module_name: str, where: str) -> types.ModuleType:
    """``module_name`` imported by the lookup rule (the module docstring): the config's folder,
    the working directory (said in one line), the installed packages."""
    top = module_name.partition(".")[0]
    code = _code()
    folders = [] if code.folder is None else [("the config's folder", Path(code.folder))]
    folders.append(("the working directory", Path.cwd()))
    importlib.invalidate_caches()  # a module written since the last import is seen
    for label, folder in folders:
        spec = importlib.machinery.PathFinder.find_spec(top, [str(folder)])
        if spec is None or not spec.has_location or spec.origin is None:
            continue
        _not_shadowing(top, spec.origin, where)
        if label == "the working directory" and spec.origin not in _NOTICED:
            _NOTICED.add(spec.origin)
            say(f"model: {where}: importing {top} from the working directory ({spec.origin})")
        path = str(folder)
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)  # as `python script.py` puts its folder: its neighbours import
        return _import(module_name, where)
    looked = ", ".join(f"{folder} ({label})" for label, folder in folders)
    return _import(module_name, where, looked)


def _not_shadowing(top: str, origin: str, where: str) -> None:
    """A module ``top`` already imported from another file is refused, not silently reused."""
    loaded = sys.modules.get(top)
    if loaded is None:
        return
    file = getattr(loaded, "__file__", None)
    if file is None or os.path.realpath(file) != os.path.realpath(origin):
        raise ValueError(
            f"model: {where}: {origin} would be imported as {top}, but {top} is already "
            f"imported from {file or 'Python itself'}; rename your module"
        )


def _import(module_name: str, where: str, looked: str | None = None) -> types.ModuleType:
    """``importlib.import_module``; any failure is one line (``looked``: where the folders were
    searched in vain, said when the module is nowhere)."""
    try:
        return importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except ModuleNotFoundError as e:
        missing = e.name or module_name
        if looked is not None and (module_name + ".").startswith(missing + "."):
            raise ValueError(
                f"model: {where}: no module {missing} in {looked} or the installed packages; "
                f"put {missing.partition('.')[0]}.py beside the config file or set "
                "models.code_dir to its folder"
            ) from None
        raise ValueError(f"model: {where}: cannot import {module_name} ({first_line(e)})") from None
    except SystemExit as e:
        raise ValueError(
            f"model: {where}: importing {module_name} exited (SystemExit({e.code!r}))"
        ) from None
    except BaseException as e:  # noqa: BLE001 - a syntax error, an error the module raises: one line
        raise ValueError(
            f"model: {where}: importing {module_name} raised {type(e).__name__}: {first_line(e)}"
        ) from None


EXTERNAL = {"timm": _timm, "hf": _hf, "python": _python}
