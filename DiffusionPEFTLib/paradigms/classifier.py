"""The downstream task ("Pixels Under Pressure"): does adding synthetic volumes help a small 3D classifier?

A MONAI ``Classifier`` (residual conv units, stride 2 per level, one logit) learns label 0 vs 1 from
(N, 1, X, Y, Z) volumes in the model's range: a fixed number of AdamW steps on random batches, with a
random left–right flip (axis 0 of RAS volumes); the same number of steps with or without synthetic
volumes, so both runs get the same compute. It is scored on held-out reals: accuracy (probability > 0.5)
and ROC AUC (MONAI's ``compute_roc_auc``). Every score is repeated for several classifier seeds
(initialisation and batch order); their spread is the classifier's own noise, which a gain from
synthetic data must exceed to mean anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..cancel import CancelToken
from ..events import EventSink, ListSink


@dataclass(frozen=True)
class ClassifierSettings:
    """steps: AdamW steps of ``batch`` volumes at ``lr``; channels: one per level (stride 2 each); seeds:
    how many classifier seeds (0, 1, …) every score is repeated for."""

    steps: int = 100
    batch: int = 8
    lr: float = 1e-3
    channels: tuple[int, ...] = (8, 16, 32, 64)
    seeds: int = 5

    def as_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, values: dict) -> "ClassifierSettings":
        return cls(**{**values, "channels": tuple(values["channels"])})


def build_classifier(shape, channels) -> nn.Module:
    """A MONAI Classifier for one-channel volumes of ``shape`` (X, Y, Z) → one logit per volume."""
    from monai.networks.nets import Classifier

    return Classifier(in_shape=(1, *shape), classes=1, channels=tuple(channels), strides=(2,) * len(channels),
                      num_res_units=1)


def train_classifier(volumes: torch.Tensor, labels: torch.Tensor, settings: ClassifierSettings, seed: int,
                     device: torch.device | str = "cpu", cancel: CancelToken | None = None) -> nn.Module:
    """Train on ``volumes`` (N, 1, X, Y, Z) with ``labels`` (N,) in {0, 1}; same seed → same network."""
    cancel = cancel or CancelToken()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_classifier(volumes.shape[2:], settings.channels).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.lr, weight_decay=1e-2)
    targets = labels.float()
    network.train()
    for _ in range(settings.steps):
        cancel.raise_if_requested("Training the downstream classifier")
        index = torch.randint(len(volumes), (min(settings.batch, len(volumes)),), generator=generator)
        batch = volumes[index]
        flip = torch.rand(len(index), generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None, None], batch.flip(2), batch)
        logits = network(batch.to(device))[:, 0]
        loss = nn.functional.binary_cross_entropy_with_logits(logits, targets[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return network.eval()


@torch.no_grad()
def predict(network: nn.Module, volumes: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Probability of label 1 for each of ``volumes`` (N, 1, X, Y, Z) → (N,) on the CPU."""
    device = next(network.parameters()).device
    chunks = [torch.sigmoid(network(volumes[start:start + batch].to(device))[:, 0]).cpu()
              for start in range(0, len(volumes), batch)]
    return torch.cat(chunks)


def scores(probabilities: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy (threshold 0.5) and ROC AUC of predictions (N,) against labels (N,) in {0, 1}."""
    from monai.metrics import compute_roc_auc

    accuracy = int(((probabilities > 0.5).long() == labels.long()).sum()) / len(labels)
    return {"accuracy": accuracy, "auc": float(compute_roc_auc(probabilities, labels.long()))}


def downstream_scores(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                      settings: ClassifierSettings, device: torch.device | str = "cpu",
                      events: EventSink | None = None, cancel: CancelToken | None = None) -> dict[str, list[float]]:
    """Train one classifier per seed on ``train`` (volumes, labels), score each on ``test``:
    {"seed": [0, 1, …], "accuracy": [...], "auc": [...]} (one entry per classifier seed)."""
    events = events or ListSink()
    result: dict[str, list[float]] = {"seed": [], "accuracy": [], "auc": []}
    events.progress("classifier", 0, settings.seeds)
    for seed in range(settings.seeds):
        network = train_classifier(*train, settings, seed, device, cancel)
        score = scores(predict(network, test[0]), test[1])
        result["seed"].append(seed)
        for name, value in score.items():
            result[name].append(value)
        events.progress("classifier", seed + 1, settings.seeds, accuracy=score["accuracy"])
    return result
