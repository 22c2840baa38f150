"""Checks of config values that name things outside the config: run names that become paths,
devices, output directories, config files. Each failure is one ``ValueError`` line naming the
key or file, what was expected and what came."""

from __future__ import annotations

import os
import re
from pathlib import Path

from smoothstab.experiments.io.files import refuse_odd

SLUG_LIMIT = 128  # characters: one path component on every common file system
SLUG = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{SLUG_LIMIT - 1}}}")


def check_slug(value: str, name: str) -> str:
    """A plain name usable as one path component: letters, digits, ``.``, ``_``, ``-``, not
    starting with ``.`` or ``-`` (so no ``..``, no separators, no absolute paths), at most
    :data:`SLUG_LIMIT` characters."""
    if isinstance(value, str) and len(value) > SLUG_LIMIT and SLUG.fullmatch(value[:SLUG_LIMIT]):
        raise ValueError(
            f"{name}: expected at most {SLUG_LIMIT} characters (it names the run directory "
            f"runs/<name>), got {len(value)}: {value[:40]!r}..."
        )
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise ValueError(
            f"{name}: expected a plain name (letters, digits, '.', '_', '-', at most "
            f"{SLUG_LIMIT} characters; it names the run directory runs/<name>), got {value!r}"
        )
    return value


def check_device_name(value: str, name: str, *, allow_auto: bool = False) -> str:
    """A device string torch understands (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...), or
    ``auto`` where allowed. Whether the device exists is checked by :func:`check_device`."""
    import torch

    if allow_auto and value == "auto":
        return value
    try:
        torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        also = ", or auto" if allow_auto else ""
        raise ValueError(
            f"{name}: expected a device such as cpu, cuda, cuda:0 or mps{also}, got {value!r}"
        ) from None
    return value


def check_device(value: str, name: str, *, allow_auto: bool = False) -> str:
    """``value`` names a device this machine has (or is ``auto`` where allowed)."""
    import torch

    check_device_name(value, name, allow_auto=allow_auto)
    if value == "auto":
        return value
    device = torch.device(value)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"{name}: {value!r} but this machine has no usable CUDA GPU; use cpu or auto"
            )
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{name}: {value!r} but this machine has {count} CUDA GPU(s), "
                f"cuda:0..cuda:{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}: 'mps' but this machine has no MPS device; use cpu or auto")
    return value


def check_output_dir(path: str | Path, name: str = "--out") -> Path:
    """``path`` is, or can be made, a writable directory (created if missing)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: expected a directory, {path} is a file; use another {name}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"{name}: cannot create the directory {path} ({e.strerror or e}); use another {name}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(
            f"{name}: cannot write into {path} (permission denied); use another {name}"
        )
    return path


def check_no_links(root: str | Path) -> Path:
    """``root`` holds nothing below it but regular files and directories: no symbolic link, so
    every file a run writes, reads or deletes is inside ``root`` itself (``root`` may be a
    link: its target is the run directory), and no special file (a FIFO, a socket, a device),
    which a read would block on or a write replace. One walk before a command; the same check
    is made again at each read and write (:func:`~smoothstab.experiments.io.files.refuse_odd`).
    """
    root = Path(root)
    for top, dirs, files in os.walk(root):  # does not descend into linked directories
        for name in sorted(dirs + files):
            path = Path(top) / name
            try:
                refuse_odd(path, os.lstat(path))
            except FileNotFoundError:
                continue  # gone since the listing
    return root


def read_config_text(path: str | Path) -> str:
    """The text of a config file, which must be UTF-8 (TOML's encoding)."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"config: {path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8"
        ) from None
    except OSError as e:
        raise ValueError(f"config: cannot read {path} ({e.strerror or e})") from None
