"""Weights and data fetched on first use, into the caches their libraries use, and verified.

=======================  ======================================  =============================
what                     where it is kept                        checked against
=======================  ======================================  =============================
a torchvision weight     ``torch.hub.get_dir()/checkpoints/``,   the SHA-256 prefix in its
name (``IMAGENET1K_V2``) the file name torchvision gives it      file name (torch.hub's rule)
``timm:NAME`` with       the Hugging Face cache (timm's hub      the hub's SHA-256 of the file;
``weights="pretrained"`` weights) or torch hub's, as timm does   torch hub's name rule for URLs
``hf:ORG/NAME``,         the Hugging Face cache (``HF_HOME``,    the hub's SHA-256 of each
``timm:hf-hub:ORG/NAME`` ``HF_HUB_CACHE``): config and weights   weights file (LFS)
``dataset = "cifar10"``  ``train.root`` (default                 the archive's MD5 (the one
                         ``~/.cache/smoothstab/cifar10``)        torchvision checks)
=======================  ======================================  =============================

What is in the cache is used as it is, with no request (a Hugging Face file is cached once its
snapshot holds it). A download goes to a temporary file beside its place, with a progress bar,
and is renamed into place only once its hash is right; a damaged download is removed, nothing is
kept, and the error says so. A failed connection is one line naming the URL and where to place
the file instead.

Offline: ``SMOOTHSTAB_OFFLINE=1`` (what ``smoothstab --offline`` sets), or the Hugging Face
libraries' own ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``, turn every fetch into one
line naming the file to place and where. Nothing here is reached by a run whose weights and data
are local files.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoothstab import __version__
from smoothstab.experiments.io.progress import Progress

OFFLINE_VARIABLES = ("SMOOTHSTAB_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TIMEOUT = 30.0  # seconds without a byte before a download is given up
CHUNK = 1 << 20
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's: resnet50-11ad3fa6.pth
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # torchvision's datasets.CIFAR10.tgz_md5
CIFAR10_FOLDER = "cifar-10-batches-py"


def offline() -> str | None:
    """The variable that turns downloads off (``SMOOTHSTAB_OFFLINE``, ``HF_HUB_OFFLINE``,
    ``TRANSFORMERS_OFFLINE`` set to 1/true/yes/on), or ``None`` when they are on."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def go_offline() -> None:
    """What ``--offline`` does: ``SMOOTHSTAB_OFFLINE=1`` and ``HF_HUB_OFFLINE=1`` for this
    process, also for a Hugging Face library already imported (it read the variable then)."""
    os.environ["SMOOTHSTAB_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/smoothstab`` (default ``~/.cache/smoothstab``): data sets without a
    ``train.root``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smoothstab"


@dataclass(frozen=True)
class Remote:
    """A file to fetch: from ``url`` to ``dest``, checked by the start of its SHA-256
    (``sha256``, any length) and/or its MD5; ``what`` names it in messages, ``instead`` says
    what to place where when downloads are off (default: the file at ``dest``)."""

    url: str
    dest: Path
    what: str
    sha256: str | None = None
    md5: str | None = None
    instead: str | None = None


def refuse_offline(what: str, place: str, why: str) -> ValueError:
    return ValueError(f"{what}: not downloaded yet and downloads are off ({why}=1); {place}")


def fetch(remote: Remote, *, quiet: bool = False) -> Path:
    """``remote.dest``: as it is when it exists (no request), else downloaded, verified and
    renamed into place (one ``ValueError`` line on failure; nothing partial is left)."""
    dest = remote.dest
    if dest.is_file():
        return dest
    why = offline()
    if why:
        place = remote.instead or f"place the file {remote.url} at {dest}"
        raise refuse_offline(remote.what, place, why)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    try:
        sha256, md5 = _download(remote.url, part, remote.what, quiet)
        bad = _mismatch(remote, sha256, md5)
        if bad:
            raise ValueError(
                f"{remote.what}: the file downloaded from {remote.url} is damaged ({bad}); it "
                "was removed and nothing was kept, download again"
            )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _download(url: str, part: Path, what: str, quiet: bool) -> tuple[str, str]:
    """Stream ``url`` into ``part`` with a progress bar; its SHA-256 and MD5 hex digests."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": f"smoothstab/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response, part.open("wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            with Progress(total, f"download {Path(url).name}", quiet=quiet, unit="B") as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise ValueError(f"{what}: cannot download {url} (HTTP {e.code} {e.reason})") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", None) or e
        raise ValueError(
            f"{what}: cannot download {url} ({reason}); check the connection, or download it "
            "elsewhere and place it where the offline message says (SMOOTHSTAB_OFFLINE=1)"
        ) from None
    return sha256.hexdigest(), md5.hexdigest()


def _mismatch(remote: Remote, sha256: str, md5: str) -> str:
    if remote.sha256 and not sha256.startswith(remote.sha256):
        return f"SHA-256 {sha256[: len(remote.sha256)]}..., expected {remote.sha256}..."
    if remote.md5 and md5 != remote.md5:
        return f"MD5 {md5}, expected {remote.md5}"
    return ""


# --- torchvision -------------------------------------------------------------------------------


def hub_checkpoint(url: str, what: str) -> Remote:
    """A file of torch hub's checkpoint cache: ``torch.hub.get_dir()/checkpoints/<name>``,
    checked by the hash prefix in its name (``resnet50-11ad3fa6.pth``), as
    ``torch.hub.load_state_dict_from_url(check_hash=True)`` does."""
    import torch

    name = Path(urllib.request.urlparse(url).path).name
    found = HASH_IN_NAME.search(name)
    dest = Path(torch.hub.get_dir()) / "checkpoints" / name
    return Remote(url, dest, what, sha256=found.group(1) if found else None)


def torchvision_weights(model: str, entry: Any) -> Remote:
    """The hub-cache file of torchvision's weight enum entry ``entry`` of ``model``."""
    return hub_checkpoint(entry.url, f"weights: {model} {entry.name}")


# --- CIFAR-10 ----------------------------------------------------------------------------------


def cifar10(root: Path, *, quiet: bool = False) -> Path:
    """``root/cifar-10-batches-py``, fetched (the archive, checked by its MD5) and unpacked into
    ``root`` when missing; the archive is kept beside it, as torchvision keeps it."""
    folder = root / CIFAR10_FOLDER
    if folder.is_dir():
        return folder
    dest = root / Path(CIFAR10_URL).name
    instead = (
        f"place {CIFAR10_FOLDER}/{{data_batch_1..5, test_batch}} (python pickle batches) in "
        f"{root}, or the archive {CIFAR10_URL} at {dest}"
    )
    archive = fetch(
        Remote(CIFAR10_URL, dest, "cifar10", md5=CIFAR10_MD5, instead=instead), quiet=quiet
    )
    _unpack(archive, root, CIFAR10_FOLDER)
    return folder


def _unpack(archive: Path, root: Path, folder: str) -> None:
    """Unpack ``folder`` of a tar archive into ``root`` (tarfile's ``data`` filter: no links
    out, no device files), through a temporary folder renamed into place."""
    import shutil
    import tarfile

    tmp = root / f".{folder}.{secrets.token_hex(4)}.part"
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[0] == folder]
            if not members:
                raise ValueError(f"{archive}: expected a folder {folder}/ in the archive")
            tar.extractall(tmp, members=members, filter="data")
        os.replace(tmp / folder, root / folder)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{archive}: cannot unpack it ({e}); delete it and run again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the Hugging Face hub (hf:ORG/NAME, timm's weights) -----------------------------------------

HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # preferred first


def hf_repo(
    repo_id: str, what: str, *, config: str | None = "config.json", weights: str | None = None
) -> Path:
    """The local snapshot folder of hub model ``repo_id`` holding ``config`` and its weights
    (``weights``, else the first of :data:`HF_WEIGHTS` the repository has, or the shards of its
    safetensors index), from the Hugging Face cache without a request when it has them, else
    downloaded there (Hugging Face's progress bars) and each LFS file checked against the hub's
    SHA-256."""
    from huggingface_hub import constants

    cached = _cached_snapshot(repo_id, config, weights)
    if cached is not None:
        return cached
    why = offline()
    if why:
        files = " and ".join(f for f in (config, weights or HF_WEIGHTS[0]) if f)
        place = (
            f"download {files} of {repo_id} into the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}) on a machine with a network, or save the model with "
            "save_pretrained and give its folder"
        )
        raise refuse_offline(what, place, why)
    return _download_repo(repo_id, what, config, weights)


def _cached_snapshot(repo_id: str, config: str | None, weights: str | None) -> Path | None:
    from huggingface_hub import constants, try_to_load_from_cache

    def cached(name: str) -> Path | None:
        found = try_to_load_from_cache(repo_id, name, cache_dir=constants.HF_HUB_CACHE)
        return Path(found) if isinstance(found, str) else None

    if config is not None and cached(config) is None:
        return None
    for name in (weights,) if weights else HF_WEIGHTS:
        path = cached(name)
        if path is not None:
            return path.parent
        index = cached(f"{name}.index.json") if name.endswith(".safetensors") else None
        if index is not None and all(cached(s) is not None for s in _shards(index)):
            return index.parent
    return None


def _shards(index: Path) -> list[str]:
    import json

    try:
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{index}: not a readable weights index; delete it, run again") from None


def _download_repo(repo_id: str, what: str, config: str | None, weights: str | None) -> Path:
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    endpoint = constants.ENDPOINT
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, files_metadata=True)
    except RepositoryNotFoundError:
        raise ValueError(
            f"{what}: no model {repo_id} on {endpoint} (or it is private and no token is set)"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        raise ValueError(f"{what}: cannot reach {endpoint} for {repo_id} ({_first(e)})") from None
    files = {s.rfilename: s for s in info.siblings or ()}
    if config and config not in files:
        raise ValueError(f"{what}: {repo_id} has no {config}")
    choices = (weights,) if weights else HF_WEIGHTS
    chosen = next((w for w in choices if w in files), None)
    index = next((f"{w}.index.json" for w in choices if f"{w}.index.json" in files), None)
    if chosen is None and index is None:
        raise ValueError(f"{what}: {repo_id} has no weights file ({', '.join(choices)})")

    def get(file: str) -> Path:
        try:
            path = hf_hub_download(
                repo_id, file, cache_dir=constants.HF_HUB_CACHE, endpoint=endpoint
            )
        except (HfHubHTTPError, OSError) as e:
            raise ValueError(f"{what}: cannot download {file} of {repo_id} ({_first(e)})") from None
        _check_lfs(Path(path), files.get(file), what, repo_id)
        return Path(path)

    if config:
        get(config)
    if chosen is not None:
        return get(chosen).parent
    for shard in _shards(get(index)):
        get(shard)
    return get(index).parent


def _check_lfs(path: Path, sibling: Any, what: str, repo_id: str) -> None:
    """A downloaded LFS file's SHA-256 against the hub's; a damaged one is removed (the blob
    and the snapshot's link to it)."""
    lfs = getattr(sibling, "lfs", None)
    expected = getattr(lfs, "sha256", None) if lfs is not None else None
    if not expected:
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise ValueError(
            f"{what}: {path.name} of {repo_id} downloaded damaged (SHA-256 "
            f"{digest.hexdigest()[:12]}..., expected {expected[:12]}...); it was removed and "
            "nothing was kept, download again"
        )


def _first(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hf_model_folder(spec: str) -> str:
    """The folder ``hf:SPEC`` loads: ``SPEC`` itself when it is a local folder, else for a hub
    id ``ORG/NAME`` its snapshot in the Hugging Face cache (:func:`hf_repo`)."""
    if Path(spec).exists() or not HUB_ID.fullmatch(spec):
        return spec
    return str(hf_repo(spec, f"model: hf:{spec} (no local folder {spec}; a hub id)"))


# --- timm --------------------------------------------------------------------------------------


def timm_pretrained(name: str) -> Path:
    """The local file of timm's pretrained weights of ``name`` (``resnet18.a1_in1k``; no tag:
    timm's default), from the Hugging Face hub (timm's source where it has one) or its URL."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    what = f"weights: timm:{name}"
    if cfg is None:
        raise ValueError(f"{what}: timm knows no pretrained weights of {name!r}")
    if cfg.hf_hub_id:
        weights = cfg.hf_hub_filename or None
        folder = hf_repo(cfg.hf_hub_id, what, config=None, weights=weights)
        for file in (weights,) if weights else HF_WEIGHTS:
            if (folder / file).is_file():
                return folder / file
        raise ValueError(f"{what}: {cfg.hf_hub_id} holds its weights in shards, which timm's "
                         "pretrained loading does not read; save them as one file")  # fmt: skip
    if cfg.url:
        return fetch(hub_checkpoint(cfg.url, what))
    raise ValueError(f"{what}: timm gives no place to download {name!r} from")
