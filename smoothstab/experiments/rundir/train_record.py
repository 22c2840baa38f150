"""``train_metrics.json``'s typed record: what the train stage got, one entry per model.

Setting DT writes the resolved ``[train]`` config and each trained model's metrics (part, seed,
training-set size, test accuracy and loss, ...); setting FT adds its proxy, the base model and
the cost of the proxy's runs; given checkpoints (DR, DA) record each spec (name, weights,
label). :func:`write_train_record` is the one writer (the keys in the order the file has always
had them) and :func:`read_train_record` the one reader, checked; the stages ask the record
(:meth:`TrainRecord.model_sizes`, :meth:`TrainRecord.sizes`,
:meth:`TrainRecord.accuracy_by_size`) instead of reading keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoothstab.experiments.io.files import DamagedFile, read_json, write_json

ORDER = ("setting", "proxy", "base", "config", "models", "cost", "wall_seconds_this_call")


@dataclass(frozen=True)
class TrainRecord:
    """The train stage's record. ``models``: one dict per model, in model order (its keys are
    what the setting records: trained models' metrics, or a given spec's name, weights and
    label). The other fields are ``None`` where the setting records nothing of them."""

    models: tuple[dict[str, Any], ...]
    setting: str | None = None
    proxy: str | None = None
    base: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    wall_seconds_this_call: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ORDER}
        out["models"] = list(self.models)
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, data: Any) -> TrainRecord:
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise TypeError("expected an object with a list of models")
        if not all(isinstance(m, dict) for m in data["models"]) or set(data) - set(ORDER):
            raise TypeError(f"expected the keys {', '.join(ORDER)} and a dict per model")
        return cls(**{**data, "models": tuple(data["models"])})

    def model_sizes(self) -> list[int]:
        """Each model's training-set size (models trained here)."""
        return [int(m["train_size"]) for m in self.models]

    def sizes(self) -> list[int]:
        """The training-set sizes, smallest first (from the config for a record written before
        models recorded their size)."""
        found = {int(m["train_size"]) for m in self.models if "train_size" in m}
        if not found and self.config is not None:
            part = self.config["part_size"]
            found = set(part) if isinstance(part, list) else {int(part)}
        return sorted(found)

    def accuracy_by_size(self) -> dict[int, float]:
        """The mean test accuracy of the models of each training-set size."""
        per: dict[int, list[float]] = {}
        for m in self.models:
            if isinstance(m.get("test_accuracy"), float) and "train_size" in m:
                per.setdefault(int(m["train_size"]), []).append(m["test_accuracy"])
        return {n: sum(v) / len(v) for n, v in per.items()}


def write_train_record(path: str | Path, record: TrainRecord) -> Path:
    return write_json(path, record.to_json())


def read_train_record(path: str | Path) -> TrainRecord:
    """``train_metrics.json`` as :func:`write_train_record` wrote it; a damaged file is one
    :class:`~smoothstab.experiments.io.files.DamagedFile` line."""
    data = read_json(path, "train_metrics.json")
    try:
        return TrainRecord.from_json(data)
    except (TypeError, ValueError) as e:
        raise DamagedFile(path, f"not a train_metrics.json of this version ({e})") from None
