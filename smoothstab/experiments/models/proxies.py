"""Setting FT: stand-ins for retraining, made cheaply from the one model a user has.

The stability error compares networks trained on disjoint data; retraining a large network
several times is rarely affordable. From one base model (``[[models.specs]]``, a weights file,
a checkpoint of ``smoothstab train`` or a random init) the train stage makes
``models.replicas`` models with one of three proxies:

* ``finetune``: replica ``k`` is the base model trained ``models.epochs`` more epochs at
  ``models.lr`` (cosine to 0) on part ``k`` of disjoint parts of the training set, with its own
  seed (batch order, augmentation).
* ``swag``: one SGD run from the base model at a constant ``models.lr`` for ``models.epochs``
  epochs on one part; every ``total_steps // swag_snapshots`` steps the trained weights are
  recorded, giving a per-entry mean ``m`` and variance ``v`` (SWAG-diagonal, Maddox et al.
  2019). Replica ``k`` is ``m + swag_scale * sqrt(v) * z_k``, ``z_k`` standard normal seeded by
  ``(models.seed, k)``. Buffers (BatchNorm statistics) are the run's last ones.
* ``noisy_sgd``: replica ``k`` continues the base model for ``models.epochs`` epochs at
  ``models.lr`` (cosine) on one part, all replicas on the same part, with noisy SGD (the
  weight noise ``models.noise_std`` of ``train.noise_std``, ``train.noise_draws`` draws) and
  its own seed.

Parts (``models.part_size`` images; ``None``: the training set divided by the number of
replicas) are consecutive slices of the proxy's own permutation of the training set, seeded by
``(train.split_seed, models.seed)``: random samples of the training set, not the slices a DT run
with the same split seed trains on (a continuation on exactly the data a model has fitted barely
moves it). "One part" is the first. ``models.layers`` chooses what
is trained (``all``, ``last_block``, ``classifier``); frozen BatchNorm layers keep their running
statistics. Batch size, momentum, weight decay, data and device come from ``[train]``.

Each replica is written as ``model_{k}.pt`` in the format of a trained model (weights, the resolved
training config of its run, metrics, ``complete``), so the later stages read it with
:func:`~smoothstab.experiments.models.training.load_trained` as if it had been trained. Finished
replicas are skipped, a partial fine-tuning or noisy-SGD run resumes from its checkpoint; a SWAG run
killed before its moments were saved (``swag_moments.pt``) restarts its short SGD run.
``train_metrics.json`` records the proxy, each replica's metrics and the cost: optimizer steps
(examples seen) and seconds, to compare with training the models from scratch.

Long (about 420 lines) because the three proxies share one trainer, one resume rule and one
metrics record; SWAG (its moments, then the draws) is the part to move out if a fourth comes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.config.setting import Replicas
from smoothstab.experiments.io.files import load_torch, save_torch
from smoothstab.experiments.io.progress import say
from smoothstab.experiments.models import distributed as D
from smoothstab.experiments.models.architectures import build_model, cam_layer, given_model
from smoothstab.experiments.models.data import (
    derive_seed,
    load_dataset,
    num_classes,
    save_splits,
    size_splits,
)
from smoothstab.experiments.models.trainer import (
    Trainer,
    deterministic_mode,
    device_name,
    epoch_batches,
    loss_and_accuracy,
)
from smoothstab.experiments.models.training import read_checkpoint, resolve_config
from smoothstab.experiments.rundir.checkpoint import write_checkpoint
from smoothstab.experiments.rundir.train_record import TrainRecord, write_train_record

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from smoothstab.experiments.config.tables import ExperimentConfig, TrainConfig
    from smoothstab.experiments.rundir.layout import RunDir

SWAG_MOMENTS = "swag_moments.pt"
SWAG_RUN = "swag_sgd.pt"


def trained_names(model: nn.Module, layers: str) -> set[str]:
    """Names of the parameters a proxy trains: all, the last block (the last child with
    parameters of the Grad-CAM stage; where the Grad-CAM layer is a leaf inside a block, as a
    ViT's first norm, that block) and the classifier, or the classifier (the last linear layer)
    alone."""
    names = {n for n, _ in model.named_parameters()}
    if layers == "all":
        return names
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(
            f"models.layers: {type(model).__name__} has no linear classifier; use layers = 'all'"
        )
    prefixes = [linear[-1]]
    if layers == "last_block":
        stage = cam_layer(model)
        kids = [
            n
            for n, c in model.get_submodule(stage).named_children()
            if next(c.parameters(), None) is not None
        ]
        leaf = next(model.get_submodule(stage).children(), None) is None
        block = stage.rpartition(".")[0] if leaf else ""
        prefixes.append(f"{stage}.{kids[-1]}" if kids else block or stage)
    return {n for n in names if any(n.startswith(p + ".") for p in prefixes)}


def freeze(model: nn.Module, layers: str) -> set[str]:
    """Leave only ``layers`` trainable; frozen BatchNorm layers stop updating their running
    statistics (in training mode they normalise with the batch's, as usual for BatchNorm).
    Returns the trained parameter names."""
    keep = trained_names(model, layers)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in params
        ):
            m.track_running_stats = False  # no update, num_batches_tracked included
    return keep


class ProxyTrainer(Trainer):
    """A :class:`~smoothstab.experiments.models.trainer.Trainer` that starts from the base model's
    weights, with only ``layers`` trainable (frozen parameters get no gradient, so SGD leaves them
    as they are)."""

    def __init__(
        self,
        cfg: TrainConfig,
        part: list[int],
        part_id: int,
        info: D.DistInfo,
        path: Any,
        train_set: Dataset,
        base: dict[str, torch.Tensor],
        layers: str,
        on_step: Any = None,
    ) -> None:
        super().__init__(cfg, part, part_id, info, path, train_set, on_step)
        self.model.load_state_dict(base)
        freeze(self.model, layers)

    def steps(self) -> int:
        """Optimizer steps of the whole run (epochs x batches per epoch)."""
        return self.cfg.epochs * len(self.batches())


def proxy_config(cfg: ExperimentConfig, train_set: Dataset) -> TrainConfig:
    """The training config of the proxy's runs: [train]'s data and optimizer with the FT
    model, epochs, lr, schedule (constant for SWAG) and weight noise."""
    t = Replicas(cfg).proxy_train_config(len(train_set), num_classes(cfg.train))
    return resolve_config(t, train_set)


def make_replicas(cfg: ExperimentConfig, run: RunDir) -> dict[str, Any]:
    """Write ``model_{k}.pt`` for every replica (skipping finished ones) and
    ``train_metrics.json``; returns what the latter holds."""
    m = cfg.models
    t = cfg.train
    info = dataset_info(t)
    train_set = load_dataset(t.dataset, root=t.root, train=True, seed=t.data_seed, info=info)
    test_set = load_dataset(t.dataset, root=t.root, train=False, seed=t.data_seed, info=info)
    pcfg = proxy_config(cfg, train_set)
    info = D.init_distributed(device_name(pcfg.device))
    base = given_model(cfg, 0, m.specs[0], pcfg.num_classes).state_dict()
    # The proxy's own permutation, not the one [train] splits by: a part is a random sample of
    # the training set, not the data a model of a DT run on the same data was trained on.
    seed = derive_seed(pcfg.split_seed, m.seed, 1)
    parts = size_splits(len(train_set), pcfg.parts, [pcfg.part_size], seed)
    if info.is_main and m.proxy == "finetune" and not run.splits.is_file():
        save_splits(run.splits, parts, pcfg.parts)
    D.barrier(info)
    start = time.perf_counter()
    with deterministic_mode(pcfg.deterministic):
        if m.proxy == "swag":
            models, cost = _swag(cfg, pcfg, run, info, parts[0], train_set, test_set, base)
        else:
            models, cost = [], {"runs": m.replicas, "steps": 0, "examples": 0, "seconds": 0.0}
            for k in range(m.replicas):
                part = parts[k] if m.proxy == "finetune" else parts[0]
                metrics = _fit(pcfg, part, k, info, run, train_set, test_set, base, m.layers)
                models.append(metrics)
                cost["steps"] += metrics["steps"]
                cost["examples"] += metrics["examples"]
                cost["seconds"] += metrics["seconds"]
    record = TrainRecord(
        tuple(models),
        setting="FT",
        proxy=m.proxy,
        base={"name": m.specs[0].name, "weights": m.specs[0].weights},
        config=pcfg.to_dict(),
        cost={**cost, "seconds": round(cost["seconds"], 2)},
        wall_seconds_this_call=round(time.perf_counter() - start, 2),
    )
    out = record.to_json()
    if info.is_main:
        write_train_record(run.train_metrics, record)
        say(f"{m.proxy}: {m.replicas} replicas -> {run.train_metrics}")
    D.barrier(info)
    return out


def _fit(
    pcfg: TrainConfig,
    part: list[int],
    k: int,
    info: D.DistInfo,
    run: RunDir,
    train_set: Dataset,
    test_set: Dataset,
    base: dict[str, torch.Tensor],
    layers: str,
) -> dict[str, Any]:
    """One fine-tuning or noisy-SGD replica, resumed or skipped as its checkpoint says."""
    path = run.model(k)
    saved = read_checkpoint(path) if path.is_file() else None
    steps, seen = epoch_batches(len(part), pcfg.batch_size, pcfg.drop_last, info.world_size)
    cost = {"steps": pcfg.epochs * steps, "examples": pcfg.epochs * seen}
    if saved is not None and saved.get("complete"):  # (killed before its cost was added: added)
        return {**cost, **saved["metrics"]}
    trainer = ProxyTrainer(pcfg, part, k, info, path, train_set, base, layers)
    if saved is not None:
        trainer.restore(saved)
    metrics = _fit_or_explain(trainer, test_set)
    metrics.update(**cost, replica=k, name=pcfg.model)
    if info.is_main:  # the complete checkpoint again, with the cost in its metrics
        saved = read_checkpoint(path)
        keys = ("state_dict", "config", "complete", "part", "seed")
        write_checkpoint(path, **{k: saved[k] for k in keys}, metrics=metrics)
    return metrics


def _fit_or_explain(trainer: ProxyTrainer, test_set: Dataset) -> dict[str, Any]:
    """``trainer.fit``; a diverged run names the [models] keys that set its rate and noise."""
    try:
        return trainer.fit(test_set)
    except ValueError as e:
        text = str(e)
        if "diverged" not in text:
            raise
        raise ValueError(
            text.replace("train.lr", "models.lr").replace("train.noise_std", "models.noise_std")
        ) from None


def _swag(
    cfg: ExperimentConfig,
    pcfg: TrainConfig,
    run: RunDir,
    info: D.DistInfo,
    part: list[int],
    train_set: Dataset,
    test_set: Dataset,
    base: dict[str, torch.Tensor],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The SWAG-diagonal replicas: moments from one short SGD run, then ``replicas`` draws."""
    m = cfg.models
    moments_path = run.root / SWAG_MOMENTS
    if not moments_path.is_file():
        moments = _swag_moments(pcfg, run, info, part, train_set, test_set, base, m)
        if info.is_main:
            save_torch(moments_path, moments)
            (run.root / SWAG_RUN).unlink(missing_ok=True)
        D.barrier(info)
    moments = load_torch(moments_path, "SWAG moments")
    device = D.rank_device(device_name(pcfg.device), info)
    models = []
    start = time.perf_counter()
    for k in range(m.replicas):
        path = run.model(k)
        if path.is_file() and read_checkpoint(path).get("complete"):
            models.append(read_checkpoint(path)["metrics"])
            continue
        gen = torch.Generator().manual_seed(derive_seed(m.seed, k))
        state = {n: v.clone() for n, v in moments["state"].items()}
        for n, mean in moments["mean"].items():
            std = moments["var"][n].sqrt()
            z = torch.randn(mean.shape, generator=gen, dtype=mean.dtype)
            state[n] = (mean + m.swag_scale * std * z).to(state[n].dtype)
        model = build_model(
            pcfg.model,
            num_classes=pcfg.num_classes,
            in_channels=dataset_info(pcfg).in_channels,
        )
        model.load_state_dict(state)
        model.to(device)
        test = loss_and_accuracy(
            model, test_set, pcfg.eval_batch_size, device, info, pcfg.num_workers
        )
        metrics = {
            "part": k,
            "seed": derive_seed(m.seed, k),
            "train_size": len(part),
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "replica": k,
            "name": pcfg.model,
            "snapshots": moments["count"],
        }
        if info.is_main:
            write_checkpoint(
                path,
                state_dict=model.cpu().state_dict(),
                config=pcfg.to_dict(),
                metrics=metrics,
                complete=True,
                part=k,
                seed=metrics["seed"],
            )
        models.append(metrics)
    cost = {
        "runs": 1,
        "steps": moments["steps"],
        "examples": pcfg.epochs * len(part),
        "seconds": moments["seconds"] + time.perf_counter() - start,  # + drawing, evaluating
    }
    return models, cost


def _too_few_snapshots(steps: int) -> None:
    raise ValueError(
        f"models.swag_snapshots: the SWAG run takes {steps} steps, too few for 2 snapshots; "
        "raise models.epochs or models.part_size"
    )


def _swag_moments(
    pcfg: TrainConfig,
    run: RunDir,
    info: D.DistInfo,
    part: list[int],
    train_set: Dataset,
    test_set: Dataset,
    base: dict[str, torch.Tensor],
    m: Any,
) -> dict[str, Any]:
    """Run SGD from the base model, recording the trained weights' first and second moments
    every ``steps // swag_snapshots`` steps (float64 sums)."""
    path = run.root / SWAG_RUN
    path.unlink(missing_ok=True)  # its snapshots were in memory: restart the short run
    holder: dict[str, Any] = {"count": 0, "sum": {}, "sq": {}}

    def collect(event: dict[str, Any]) -> None:
        if event["global_step"] % holder["every"]:
            return
        for n, p in holder["trainer"].model.named_parameters():
            if not p.requires_grad:
                continue
            w = p.detach().to("cpu", torch.float64)
            if n not in holder["sum"]:
                holder["sum"][n], holder["sq"][n] = torch.zeros_like(w), torch.zeros_like(w)
            holder["sum"][n] += w
            holder["sq"][n] += w * w
        holder["count"] += 1

    trainer = ProxyTrainer(pcfg, part, 0, info, path, train_set, base, m.layers, collect)
    steps = trainer.steps()
    holder.update(trainer=trainer, every=max(1, steps // m.swag_snapshots))
    if steps // holder["every"] < 2:  # known before the SGD run: refused before it, not after
        _too_few_snapshots(steps)
    metrics = _fit_or_explain(trainer, test_set)
    c = max(holder["count"], 1)
    if holder["count"] < 2:
        _too_few_snapshots(steps)
    dtype = {n: p.dtype for n, p in trainer.model.named_parameters()}
    return {
        "mean": {n: (s / c).to(dtype[n]) for n, s in holder["sum"].items()},
        "var": {  # float64 sums: the difference would cancel in float32
            n: (holder["sq"][n] / c - (s / c) ** 2).clamp(min=0).to(dtype[n])
            for n, s in holder["sum"].items()
        },
        "state": {n: v.detach().cpu().clone() for n, v in trainer.model.state_dict().items()},
        "count": holder["count"],
        "steps": steps,
        "seconds": metrics["seconds"],
    }
