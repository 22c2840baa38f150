"""The loop that trains one model: SGD (paper Eq. 2) or noisy SGD (Eq. 3), checkpointed.

Every random number is a pure function of seeds and the position in training, never of how the run
got there: the model starts from torch's generator seeded with the part seed; epoch ``e`` visits the
part in the order of a permutation seeded by ``(part seed, e)``; step ``s`` reseeds torch's
generators (dropout; :func:`~smoothstab.experiments.models.data.seed_torch`) and draws the weight
noise from ``(part seed, e, s)``; augmentation of image ``i`` is seeded by ``(part seed, e, i)``
(:class:`~smoothstab.experiments.models.data.EpochSeeded`). So a run killed mid-epoch resumes from
its last checkpoint (weights, optimizer, scheduler, epoch, step) and ends with bitwise the same
weights as an uninterrupted run on CPU in deterministic mode.

With ``keep="best"`` the model is evaluated on a validation split after every epoch (in eval
mode, so training itself is unchanged) and the checkpoint also carries the best epoch's weights
so far; the complete checkpoint holds those weights. Ties keep the earliest epoch.

Speed options (``amp``, ``channels_last``, ``compile``; see
:class:`~smoothstab.experiments.config.tables.TrainConfig`) act only on the forward and backward
pass: the draw order above, checkpoints and resume are the same with them. With fp16 the gradient
scaler's state is checkpointed too.

Under ``torchrun`` each global batch is dealt across ranks
(:mod:`~smoothstab.experiments.models.distributed`) and the loss scaled so that DDP's gradient
average is the whole batch's mean gradient: the same as one process up to float summation order
(BatchNorm statistics are per rank, as usual with DDP).

Long (about 510 lines) because exact resume needs the whole loop's state in one place:
seeding, checkpoints, the best-epoch record and the stop at a non-finite loss.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from smoothstab.experiments.config.datasets import dataset_info
from smoothstab.experiments.io.progress import Progress, say
from smoothstab.experiments.models import distributed as D
from smoothstab.experiments.models.accel import autocast
from smoothstab.experiments.models.architectures import build_model
from smoothstab.experiments.models.data import EpochSeeded, derive_seed, seed_torch
from smoothstab.experiments.rundir.checkpoint import write_checkpoint
from smoothstab.methods import output_logits
from smoothstab.renames import module_getattr

if TYPE_CHECKING:
    from pathlib import Path

    from smoothstab.experiments.config.tables import TrainConfig


def device_name(device: str) -> str:
    """``device``, with ``auto`` meaning CUDA when there is one, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@contextlib.contextmanager
def deterministic_mode(on: bool, compiled: bool = False) -> Iterator[None]:
    """Deterministic kernels inside the block (strict on CPU; CUDA warns where it has none);
    ``compiled``: the block will ``torch.compile``, so inductor's own flag is set too."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be
        _use_deterministic(True, torch.cuda.is_available(), compiled)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        _use_deterministic(before[0], before[1], compiled)
        torch.backends.cudnn.benchmark = before[2]


def _use_deterministic(mode: bool, warn_only: bool, compiled: bool) -> None:
    """``torch.use_deterministic_algorithms``, which also sets inductor's flag and for that
    imports inductor (about 2 s on a CPU): done so only where inductor is or will be in use."""
    if compiled or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:  # the same switch of the kernels, without the import
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def make_optimizer(
    model: nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with momentum and weight decay, and its per-epoch step or cosine schedule."""
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    if cfg.schedule == "step":
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
    return optimizer, scheduler


def epoch_batches(n: int, batch_size: int, drop_last: bool, world: int = 1) -> tuple[int, int]:
    """``(batches, examples)`` of one epoch over ``n`` examples, as :meth:`Trainer.batches`
    cuts it: full batches of ``batch_size``, then the rest unless ``drop_last``. A batch smaller
    than ``world`` is dropped too: it would leave a rank empty (DDP only)."""
    if batch_size < world:
        return 0, 0
    full, rest = divmod(n, batch_size)
    last = rest if rest >= world and not drop_last else 0
    return full + (last > 0), full * batch_size + last


class Trainer:
    """One model's training: model, optimizer and schedule, and where it stands (epoch, step).

    Args:
        cfg: the resolved config (``num_classes`` and ``part_size`` filled in).
        part_indices: the training-set indices of this model's part.
        part_id: ``p`` of ``model_{p}.pt``; with ``cfg.seed`` it seeds everything.
        info: this process's place in the group.
        path: the checkpoint file.
        train_set: the whole training set.
        on_step: called with a dict after every optimizer step, or ``None``.
        val_set: with ``cfg.keep == "best"``, the validation images (never test images) that
            choose the epoch whose weights are kept.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        part_indices: Sequence[int],
        part_id: int,
        info: D.DistInfo,
        path: Path,
        train_set: Dataset,
        on_step: Callable[[dict[str, Any]], None] | None,
        val_set: Dataset | None = None,
    ) -> None:
        self.cfg, self.info, self.path, self.on_step = cfg, info, path, on_step
        if (cfg.keep == "best") != (val_set is not None):
            raise ValueError(
                f"val_set: expected one exactly when keep = 'best' (keep={cfg.keep!r})"
            )
        self.val_set = val_set
        self.part, self.part_id = list(part_indices), part_id
        self.seed = derive_seed(cfg.seed, part_id)
        self.device = D.rank_device(device_name(cfg.device), info)
        # augmentation seeded per (epoch, image); in-memory sets have none and a fast path
        in_memory = isinstance(train_set, TensorDataset)
        self.train_set = train_set if in_memory else EpochSeeded(train_set, self.seed)
        seed_torch(self.seed)  # the model is built on the CPU
        channels = dataset_info(cfg).in_channels
        self.model = build_model(cfg.model, num_classes=cfg.num_classes, in_channels=channels)
        self.model.to(self.device, memory_format=memory_format(cfg))
        self.net = self.model  # what the forward pass goes through: DDP's wrapper if any
        if info.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg)
        # fp16 needs loss scaling (its range is small); bf16 has float32's range and needs none
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.amp == "fp16" else None
        self._loader: _EpochLoader | None = None  # num_workers > 0: one loader, workers persist
        self.epoch, self.step = 0, 0
        self.train_stats: dict[str, float] = {}  # of the last whole epoch
        self.val_accuracies: list[float] = []  # keep="best": after each epoch
        self.best: dict[str, Any] | None = None  # keep="best": epoch, val scores, state_dict

    def restore(self, saved: dict) -> None:
        """Continue from a partial checkpoint written by :meth:`save`."""
        self.model.load_state_dict(saved["state_dict"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.epoch, self.step = saved["epoch"], saved["step"]
        self.train_stats = saved["train_stats"]
        self.val_accuracies, self.best = saved.get("val_accuracies", []), saved.get("best")
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])

    def fit(self, test_set: Dataset) -> dict[str, Any]:
        """Train the remaining epochs, evaluate, write the complete checkpoint; the metrics."""
        start = time.perf_counter()
        while self.epoch < self.cfg.epochs:
            self.train_stats = self.train_epoch()
            self.scheduler.step()
            self.epoch, self.step = self.epoch + 1, 0
            if self.val_set is not None:
                self.validate()
            self.save(complete=False)
        cfg = self.cfg
        if self.best is not None:
            self.model.load_state_dict(self.best["state_dict"])
        test = loss_and_accuracy(
            self.model, test_set, cfg.eval_batch_size, self.device, self.info, cfg.num_workers
        )
        metrics = {
            "part": self.part_id,
            "seed": self.seed,
            "train_size": len(self.part),
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            **{f"train_{k}": v for k, v in self.train_stats.items()},
            "epochs": self.cfg.epochs,
            **self.best_metrics(),
            "device": str(self.device),
            "world_size": self.info.world_size,
            "seconds": round(time.perf_counter() - start, 2),
        }
        self.save(complete=True, metrics=metrics)
        if self.info.is_main:
            say(
                f"model {self.part_id}: test accuracy {test['accuracy']:.4f} "
                f"(loss {test['loss']:.4f}, {len(self.part)} train images, {metrics['seconds']} s)"
            )
        return metrics

    def validate(self) -> None:
        """Score the epoch just finished on the validation split; keep its weights if best."""
        cfg = self.cfg
        val = loss_and_accuracy(
            self.model, self.val_set, cfg.eval_batch_size, self.device, self.info, cfg.num_workers
        )
        self.val_accuracies.append(val["accuracy"])
        if self.best is None or val["accuracy"] > self.best["val_accuracy"]:
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = {
                "epoch": self.epoch,
                "val_accuracy": val["accuracy"],
                "val_loss": val["loss"],
                "state_dict": state,
            }

    def best_metrics(self) -> dict[str, Any]:
        """keep="best": the kept epoch (1-based) and its validation scores; else nothing."""
        if self.best is None:
            return {}
        return {
            "keep": "best",
            "kept_epoch": self.best["epoch"],
            "val_accuracy": self.best["val_accuracy"],
            "val_loss": self.best["val_loss"],
            "val_size": len(self.val_set),
            "val_accuracies": list(self.val_accuracies),
        }

    def batches(self) -> list[list[int]]:
        """This epoch's global batches: a seeded permutation of the part, cut in order."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        order = [self.part[i] for i in torch.randperm(len(self.part), generator=gen).tolist()]
        b = self.cfg.batch_size
        steps, _ = epoch_batches(len(order), b, self.cfg.drop_last, self.info.world_size)
        return [order[i * b : (i + 1) * b] for i in range(steps)]

    def train_epoch(self) -> dict[str, float]:
        """The rest of this epoch; running loss and accuracy of this rank's share."""
        batches = self.batches()
        if isinstance(self.train_set, EpochSeeded):
            self.train_set.set_epoch(self.epoch)
        todo = batches[self.step :]  # a resumed epoch skips the batches already done
        shards = [D.shard(b, self.info) for b in todo]
        label = f"model {self.part_id} epoch {self.epoch + 1}/{self.cfg.epochs}"
        loss_sum, correct, seen = 0.0, 0, 0
        self.model.train()
        with Progress(len(batches), label, quiet=self.cfg.quiet, start=self.step) as bar:
            for (x, y), batch in zip(self._tensors(shards), todo, strict=True):
                step_loss, step_correct = self.sgd_step(x, y, len(batch))
                loss_sum, correct, seen = (
                    loss_sum + step_loss,
                    correct + step_correct,
                    seen + len(y),
                )
                self.step += 1
                bar.update(loss=loss_sum / seen, acc=correct / seen)
                self.after_step(len(batches), step_loss / len(y))
        return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1)}

    def _tensors(self, shards: list[list[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) on the device for each shard of indices, in order."""
        fmt = memory_format(self.cfg)
        if isinstance(self.train_set, TensorDataset):
            for s in shards:
                x, y = self.train_set[torch.tensor(s)]
                yield _to(x, self.device, fmt), y.to(self.device)
            return
        pin = self.device.type == "cuda"
        if self.cfg.num_workers == 0:
            loader = DataLoader(self.train_set, batch_sampler=shards, pin_memory=pin)
        else:
            if self._loader is None:
                self._loader = _EpochLoader(self.train_set, self.cfg.num_workers, pin)
            loader = self._loader.epoch(self.epoch, shards)
        for x, y in loader:
            yield _to(x, self.device, fmt, non_blocking=True), y.to(self.device, non_blocking=True)

    def sgd_step(self, x: torch.Tensor, y: torch.Tensor, global_count: int) -> tuple[float, int]:
        """One step of SGD, or of noisy SGD (Eq. 3): the gradient of E_V[loss(W + V)],
        V ~ N(0, s_w^2 I), averaged over ``noise_draws`` draws, applied to W itself.
        Returns this rank's loss sum and number correct (at the last draw's weights)."""
        seed_torch(derive_seed(self.seed, self.epoch, self.step, self.info.rank), self.device)
        # sum over this rank's share, scaled so that DDP's mean over ranks is the batch mean
        scale = self.info.world_size / global_count
        noisy = self.cfg.noise_std > 0
        draws = self.cfg.noise_draws if noisy else 1
        if noisy:  # the same V on every rank: seeded without the rank
            gen = torch.Generator(self.device)
            gen.manual_seed(derive_seed(self.seed, self.epoch, self.step))
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for d in range(draws):
            sync = d == draws - 1 or not self.info.active  # DDP: all-reduce once, at the end
            with (
                perturbed(params, self.cfg.noise_std, gen) if noisy else contextlib.nullcontext(),
                contextlib.nullcontext() if sync else self.net.no_sync(),
            ):
                with autocast(self.cfg.amp, self.device):
                    out = output_logits(self.net(x), len(x))
                loss = F.cross_entropy(out.float(), y, reduction="sum")
                finite &= torch.isfinite(loss)
                scaled = loss * (scale / draws)
                (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
        if not bool(finite):  # stop before the step: no NaN weights are ever saved
            raise ValueError(
                f"model {self.part_id}: training diverged, the loss is {loss.item()} at epoch "
                f"{self.epoch + 1}, step {self.step + 1}; lower train.lr (now {self.cfg.lr:g})"
                + (f" or train.noise_std (now {self.cfg.noise_std:g})" if noisy else "")
            )
        if self.scaler is None:
            self.optimizer.step()
        else:  # skips the step when the scaled gradients overflowed, then adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.item(), int((out.argmax(1) == y).sum())

    def after_step(self, steps_per_epoch: int, loss: float) -> None:
        global_step = self.epoch * steps_per_epoch + self.step
        every = self.cfg.checkpoint_every
        if every and global_step % every == 0 and self.step < steps_per_epoch:
            self.save(complete=False)
        if self.on_step is not None:
            self.on_step(
                {
                    "part": self.part_id,
                    "epoch": self.epoch,
                    "step": self.step,
                    "global_step": global_step,
                    "loss": loss,
                }
            )

    def save(self, *, complete: bool, metrics: dict | None = None) -> None:
        """Write the checkpoint (rank 0); a complete one holds no optimizer/resume state.
        Weights that are no longer finite (the last step diverged) are never written."""
        if self.info.is_main:
            weights = self.model.state_dict().values()
            if not all(bool(torch.isfinite(w).all()) for w in weights if w.is_floating_point()):
                raise ValueError(
                    f"model {self.part_id}: training diverged, the weights are not finite after "
                    f"epoch {self.epoch}; lower train.lr (now {self.cfg.lr:g})"
                )
            resume = None
            if not complete:
                resume = dict(
                    epoch=self.epoch,
                    step=self.step,
                    optimizer=self.optimizer.state_dict(),
                    scheduler=self.scheduler.state_dict(),
                    train_stats=self.train_stats,
                )
                if self.best is not None:
                    resume.update(best=self.best, val_accuracies=self.val_accuracies)
                if self.scaler is not None:
                    resume.update(scaler=self.scaler.state_dict())
            write_checkpoint(
                self.path,
                state_dict=self.model.state_dict(),
                config=self.cfg.to_dict(),
                metrics=metrics or {},
                complete=complete,
                part=self.part_id,
                seed=self.seed,
                resume=resume,
            )
        D.barrier(self.info)


def memory_format(cfg: TrainConfig) -> torch.memory_format:
    """``channels_last`` or the default contiguous format, for weights and 4-d inputs."""
    return torch.channels_last if cfg.channels_last else torch.preserve_format


def _to(
    x: torch.Tensor, device: torch.device, fmt: torch.memory_format, non_blocking: bool = False
) -> torch.Tensor:
    """``x`` on ``device``; a 4-d batch also in ``fmt`` (channels_last applies to NCHW only)."""
    if x.ndim != 4:
        fmt = torch.preserve_format
    return x.to(device, non_blocking=non_blocking, memory_format=fmt)


class _Batches:
    """A batch sampler whose batches are set before each epoch (the loader keeps this object)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _ByEpoch(Dataset):
    """Items addressed as ``(epoch, index)``: a worker's copy of an :class:`EpochSeeded` set
    learns the epoch from the index, so workers can outlive an epoch (persistent workers)."""

    def __init__(self, dataset: EpochSeeded) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, i = key
        self.dataset.set_epoch(epoch)
        return self.dataset[i]


class _EpochLoader:
    """One DataLoader for the whole run, with persistent workers (and pinned memory on CUDA):
    the workers start once, not once per epoch. Each item is still drawn under the seed of its
    (epoch, index), so batches are bitwise those of a fresh loader per epoch."""

    def __init__(self, dataset: EpochSeeded, workers: int, pin: bool) -> None:
        self.sampler = _Batches()
        self.loader = DataLoader(
            _ByEpoch(dataset),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=True,
        )

    def epoch(self, epoch: int, shards: list[list[int]]) -> DataLoader:
        self.sampler.batches = [[(epoch, i) for i in s] for s in shards]
        return self.loader


@contextlib.contextmanager
def perturbed(params: list[nn.Parameter], std: float, generator: torch.Generator) -> Iterator[None]:
    """Inside the block each parameter is ``W + V``, ``V ~ N(0, std^2 I)`` drawn from
    ``generator``; afterwards it is ``W`` again, bitwise (restored from a copy, not ``- V``)."""
    clean = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            noise = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
            p.add_(noise, alpha=std)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(params, clean, strict=True):
                p.copy_(w)


@torch.no_grad()
def loss_and_accuracy(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str,
    info: D.DistInfo | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset`` (sharded over ranks)."""
    info = info or D.DistInfo()
    was_training = model.training
    model.eval()
    idx = list(range(len(dataset)))[info.rank :: info.world_size]
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    loader = DataLoader(Subset(dataset, idx), batch_size=batch_size, num_workers=num_workers)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = output_logits(model(x), len(x))
        totals += torch.stack(
            [
                F.cross_entropy(out, y, reduction="sum"),
                (out.argmax(1) == y).sum(),
                torch.tensor(len(y), device=device),
            ]
        ).double()
    D.all_reduce_sum(totals, info)
    model.train(was_training)
    loss, correct, count = totals.tolist()
    return {"loss": loss / count, "accuracy": correct / count}


_RENAMED = {
    "evaluate": "loss_and_accuracy"
}  # not the evaluate stage (:mod:`~smoothstab.experiments.stages.evaluate`)
__getattr__ = module_getattr(__name__, _RENAMED, globals(), __name__)  # old names, until 1.0
