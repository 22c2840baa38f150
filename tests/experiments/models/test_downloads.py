"""Downloads on first use (:mod:`smoothstab.experiments.models.download`), against small fake
files served from 127.0.0.1 inside each test: torch hub checkpoints (torchvision's weight names,
checked by the hash prefix in the file name), CIFAR-10's archive (checked by its MD5) and a fake
Hugging Face hub (``hf:ORG/NAME``, ``timm:hf-hub:``, timm's pretrained weights; checked by the
hub's SHA-256). For each: the first fetch, a second run that makes no request, a damaged download
refused and removed, and the offline refusal. No address but the loopback is ever asked, and
every request is bounded by a 5 s timeout."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothstab.experiments.models import data, download
from smoothstab.experiments.models.architectures import build_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """A loopback HTTP server of ``files`` (path -> bytes) that records every request; paths
    under ``/api/models/`` answer a JSON body given in ``api``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.api: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, body: bool) -> None:
                path = self.path.split("?")[0]
                server.requests.append((self.command, path))
                if path in server.api:
                    data = json.dumps(server.api[path]).encode()
                    headers = {"Content-Type": "application/json"}
                elif path in server.files:
                    data, headers = server.files[path], dict(server.headers.get(path, {}))
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def gets(self) -> int:
        return sum(1 for method, _ in self.requests if method == "GET")


@pytest.fixture
def server(monkeypatch, tmp_path):
    """The server, downloads on (the suite is offline otherwise), proxies off, the caches in
    ``tmp_path``, 5 s timeouts."""
    for name in ("SMOOTHSTAB_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CI", "true")  # no progress bars in the test output
    monkeypatch.setattr(download, "TIMEOUT", 5.0)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))
    resolve = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise OSError(f"the download tests ask no address but the loopback, not {host}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    s = Server()
    yield s
    s.close()


def named_by_hash(payload: bytes, stem: str) -> str:
    return f"{stem}-{hashlib.sha256(payload).hexdigest()[:8]}.pth"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name)


# --- torch hub checkpoints (torchvision's weight names) ------------------------------------------


def test_a_checkpoint_is_fetched_once_then_read_from_the_cache(server, tmp_path):
    payload = b"weights" * 1000
    name = named_by_hash(payload, "tiny")
    server.files[f"/{name}"] = payload
    remote = download.hub_checkpoint(f"{server.url}/{name}", "weights: tiny")
    assert remote.dest == tmp_path / "torch_hub" / "checkpoints" / name
    assert remote.sha256 == hashlib.sha256(payload).hexdigest()[:8]
    path = download.fetch(remote)
    assert path.read_bytes() == payload and server.gets() == 1
    assert download.fetch(remote) == path and server.gets() == 1  # cached: no request
    assert leftovers(path.parent) == []


def test_a_damaged_checkpoint_is_refused_and_removed(server, tmp_path):
    name = named_by_hash(b"the real weights", "tiny")
    server.files[f"/{name}"] = b"something else"
    remote = download.hub_checkpoint(f"{server.url}/{name}", "weights: tiny")
    with pytest.raises(ValueError) as e:
        download.fetch(remote)
    assert str(e.value).startswith(f"weights: tiny: the file downloaded from {server.url}/{name} ")
    assert "is damaged (SHA-256 " in str(e.value) and "nothing was kept" in str(e.value)
    assert not remote.dest.exists() and leftovers(remote.dest.parent) == []


@pytest.mark.parametrize("variable", ["SMOOTHSTAB_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_a_fetch_is_one_line_naming_the_file_to_place(server, monkeypatch, variable):
    payload = b"w" * 10
    name = named_by_hash(payload, "tiny")
    server.files[f"/{name}"] = payload
    monkeypatch.setenv(variable, "1")
    remote = download.hub_checkpoint(f"{server.url}/{name}", "weights: tiny")
    with pytest.raises(ValueError) as e:
        download.fetch(remote)
    assert str(e.value) == (
        f"weights: tiny: not downloaded yet and downloads are off ({variable}=1); place the "
        f"file {server.url}/{name} at {remote.dest}"
    )
    assert server.requests == []


def test_a_missing_file_on_the_server_is_one_line(server):
    remote = download.hub_checkpoint(f"{server.url}/gone-abc.pth", "weights: gone")
    with pytest.raises(
        ValueError, match=r"^weights: gone: cannot download .*gone-abc\.pth \(HTTP 404"
    ):
        download.fetch(remote)
    assert not remote.dest.exists() and leftovers(remote.dest.parent) == []


def test_a_torchvision_weight_name_is_fetched_into_torch_hub_and_loaded(server, monkeypatch):
    """``build_model(..., weights="IMAGENET1K_V1")`` on a name not in the cache: fetched (here
    from the loopback, standing in for download.pytorch.org), checked, loaded; then cached."""
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.squeezenet1_1(num_classes=1000)
    buf = io.BytesIO()
    torch.save(source.state_dict(), buf)
    payload = buf.getvalue()
    name = named_by_hash(payload, "squeezenet1_1")
    server.files[f"/{name}"] = payload
    real = download.torchvision_weights

    def from_loopback(model, entry):
        remote = real(model, entry)
        assert remote.url == entry.url and "download.pytorch.org" in remote.url
        return download.hub_checkpoint(f"{server.url}/{name}", remote.what)

    monkeypatch.setattr(download, "torchvision_weights", from_loopback)
    for _ in range(2):
        loaded = build_model("squeezenet1_1", num_classes=1000, weights="IMAGENET1K_V1")
        for a, b in zip(source.state_dict().values(), loaded.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert server.gets() == 1


def test_torchvision_names_map_to_torch_hub_files_with_their_hash():
    import torchvision

    entry = torchvision.models.get_model_weights("resnet50")["IMAGENET1K_V2"]
    remote = download.torchvision_weights("resnet50", entry)
    assert remote.url == entry.url and remote.sha256 == "11ad3fa6"
    assert remote.dest == Path(torch.hub.get_dir()) / "checkpoints" / "resnet50-11ad3fa6.pth"


# --- CIFAR-10 ----------------------------------------------------------------------------------


def cifar_archive() -> bytes:
    """A tar.gz of cifar-10-batches-py with 4 training images per batch and 3 test images."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            n = 3 if name == "test_batch" else 4
            batch = {
                b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                b"labels": list(range(n)),
            }
            blob = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def test_cifar10_is_fetched_checked_by_md5_and_unpacked_once(server, monkeypatch, tmp_path):
    archive = cifar_archive()
    server.files["/cifar-10-python.tar.gz"] = archive
    monkeypatch.setattr(download, "CIFAR10_URL", f"{server.url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(download, "CIFAR10_MD5", hashlib.md5(archive).hexdigest())
    root = tmp_path / "cifar"
    test = data.load_dataset("cifar10", root=root, train=False)
    assert len(test) == 3 and len(data.load_dataset("cifar10", root=root, train=True)) == 20
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive and server.gets() == 1
    assert sorted(p.name for p in root.iterdir()) == [
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
    ]


def test_a_damaged_cifar_archive_is_refused_and_removed(server, monkeypatch, tmp_path):
    server.files["/cifar-10-python.tar.gz"] = cifar_archive()
    monkeypatch.setattr(download, "CIFAR10_URL", f"{server.url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(download, "CIFAR10_MD5", "0" * 32)
    root = tmp_path / "cifar"
    with pytest.raises(
        ValueError, match=r"^cifar10: the file downloaded from .* is damaged \(MD5 "
    ):
        data.load_dataset("cifar10", root=root, train=False)
    assert list(root.iterdir()) == []


# --- a fake Hugging Face hub -------------------------------------------------------------------


def serve_repo(server: Server, repo: str, files: dict[str, bytes], lfs: dict[str, bytes]) -> None:
    """Serve ``files`` of hub model ``repo`` as the hub does: the API's file list with each LFS
    file's SHA-256 (``lfs``: the bytes the hub says it holds, which may differ from what is
    served), and each file under ``/REPO/resolve/main/``."""
    siblings = []
    for name, payload in files.items():
        entry = {"rfilename": name, "size": len(payload)}
        if name in lfs:
            digest = hashlib.sha256(lfs[name]).hexdigest()
            entry["lfs"] = {"sha256": digest, "size": len(lfs[name]), "pointerSize": 134}
            etag = digest
        else:
            etag = hashlib.sha1(payload).hexdigest()
        siblings.append(entry)
        path = f"/{repo}/resolve/main/{name}"
        server.files[path] = payload
        server.headers[path] = {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT}
    server.api[f"/api/models/{repo}"] = {"id": repo, "sha": COMMIT, "siblings": siblings}


@pytest.fixture
def hub(server, monkeypatch, tmp_path):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "ENDPOINT", server.url)  # as HF_ENDPOINT would set them
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return server


def tiny_vit_files() -> dict[str, bytes]:
    transformers = pytest.importorskip("transformers")
    from helpers import TINY_HF_VIT

    torch.manual_seed(0)
    config = transformers.ViTConfig(**TINY_HF_VIT, num_labels=5)
    model = transformers.ViTForImageClassification(config)
    from safetensors.torch import save

    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    return {"config.json": config.to_json_string().encode(), "model.safetensors": weights}


def test_an_hf_hub_model_is_fetched_checked_and_then_cached(hub):
    files = tiny_vit_files()
    serve_repo(hub, "org/tiny-vit", files, lfs={"model.safetensors": files["model.safetensors"]})
    first = build_model("hf:org/tiny-vit", num_classes=5, in_channels=3)
    asked = list(hub.requests)
    assert ("GET", "/org/tiny-vit/resolve/main/model.safetensors") in asked
    second = build_model("hf:org/tiny-vit", num_classes=5, in_channels=3)
    assert hub.requests == asked  # the second build asks nothing
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(first.eval()(x).logits, second.eval()(x).logits)


def test_a_damaged_hf_hub_file_is_refused_and_removed(hub, tmp_path):
    files = tiny_vit_files()
    good = files["model.safetensors"]
    files["model.safetensors"] = good[:-8] + b"\x00" * 8
    serve_repo(hub, "org/tiny-vit", files, lfs={"model.safetensors": good})
    with pytest.raises(ValueError, match=r"model.safetensors of org/tiny-vit downloaded damaged"):
        build_model("hf:org/tiny-vit", num_classes=5, in_channels=3)
    blobs = list((tmp_path / "hf").rglob("blobs/*"))
    assert hashlib.sha256(good).hexdigest() not in [b.name for b in blobs]
    assert not list((tmp_path / "hf").rglob("snapshots/*/model.safetensors"))


def test_an_hf_hub_model_offline_is_one_line_naming_the_cache(hub, monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as e:
        build_model("hf:org/tiny-vit", num_classes=5, in_channels=3)
    message = str(e.value)
    assert message.startswith(
        "model: hf:org/tiny-vit (no local folder org/tiny-vit; a hub id): "
        "not downloaded yet and downloads are off (HF_HUB_OFFLINE=1)"
    )
    assert str(tmp_path / "hf") in message and "\n" not in message
    assert hub.requests == []


def test_timm_pretrained_weights_come_from_the_hub_once(hub):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save

    torch.manual_seed(0)
    source = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    weights = save(source.state_dict())
    serve_repo(
        hub,
        "timm/test_resnet.r160_in1k",
        {"model.safetensors": weights},
        lfs={"model.safetensors": weights},
    )
    for _ in range(2):
        model = build_model("timm:test_resnet.r160_in1k", num_classes=1000, weights="pretrained")
        for a, b in zip(source.state_dict().values(), model.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert hub.gets() == 2  # the file list and the file, once
    other = build_model("timm:test_resnet.r160_in1k", num_classes=7, weights="pretrained")
    assert other.get_classifier().out_features == 7  # timm's new head; the body is the hub's
    assert torch.equal(other.conv1[0].weight, source.conv1[0].weight)


def test_timm_hf_hub_names_are_fetched_as_hub_models(hub):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save

    torch.manual_seed(1)
    source = timm.create_model("test_resnet.r160_in1k", pretrained=False, num_classes=4)
    config = {"architecture": "test_resnet", "num_classes": 4, "pretrained_cfg": {}}
    weights = save(source.state_dict())
    files = {"config.json": json.dumps(config).encode(), "model.safetensors": weights}
    serve_repo(hub, "me/net", files, lfs={"model.safetensors": weights})
    model = build_model("timm:hf-hub:me/net", num_classes=4)
    for a, b in zip(source.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_offline_switch_of_the_command_line_refuses_in_one_line(server, tmp_path, capsys):
    """``--offline`` on a run whose torchvision weights are not in the cache: one line naming
    the file and where to place it, exit 2, no request."""
    from smoothstab.experiments.cli import main

    config = tmp_path / "dr.toml"
    config.write_text(
        'name = "dr"\n[train]\ndataset = "shapes"\n[models]\nsetting = "DR"\n'
        'specs = [{name = "resnet18", weights = "IMAGENET1K_V1"}, {name = "resnet18"}]\n'
        '[attribution]\nmethods = ["grad"]\nn_images = 2\nn_samples = 2\nstability_r = [0.0]\n'
        "fidelity_r = [0.0]\n[evaluation]\ntopk = 5\n"
    )
    argv = ["run", str(config), "--out", str(tmp_path / "out"), "--offline", "--quiet"]
    assert main([*argv, "--stages", "train", "attribute"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    dest = tmp_path / "torch_hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert err == [
        "smoothstab run: error: weights: resnet18 IMAGENET1K_V1: not downloaded yet and downloads "
        "are off (SMOOTHSTAB_OFFLINE=1); place the file "
        f"https://download.pytorch.org/models/resnet18-f37072fd.pth at {dest}"
    ]
    assert server.requests == []
