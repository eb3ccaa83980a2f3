"""`SeedEnsemble`: one configuration trained with several seeds, predicting the average of its members.

Saved as `meta.json` (family `seed_ensemble`, the members' seeds) and one folder per member
(`seed-<seed>/`, each a `TrainedModel` folder), so `TrainedModel.load` reads it like any model.
Its `history` and `hparams` are the first member's; `members` keeps them all for per-seed scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.models.base import META_FILE, TrainedModel

FAMILY = "seed_ensemble"


class SeedEnsemble(TrainedModel):
    """The average prediction of `members` (probabilities for classification, values for regression)."""

    family = FAMILY

    def __init__(self, members: list[TrainedModel], seeds: list[int]):
        first = members[0]
        super().__init__(hparams=first.hparams, history=first.history, best_epoch=first.best_epoch, task=first.task,
                         n_classes=first.n_classes)  # fmt: skip
        self.members, self.seeds = members, seeds

    def predict(self, X) -> np.ndarray:
        """The mean of the members' predictions."""
        return np.mean([np.asarray(m.predict(X), dtype=np.float64) for m in self.members], axis=0)

    def single(self) -> TrainedModel:
        """The first member, what a `serve: single` benchmark serves."""
        return self.members[0]

    def save(self, dir: Path) -> None:
        """Write each member to `dir/seed-<seed>/` and `meta.json` naming them."""
        dir = Path(dir)
        dir.mkdir(parents=True, exist_ok=True)
        for seed, member in zip(self.seeds, self.members):
            member.save(dir / f"seed-{seed}")
        (dir / META_FILE).write_text(json.dumps({"family": FAMILY, "seeds": self.seeds}, indent=2))

    @classmethod
    def load_folder(cls, dir: Path, meta: dict) -> SeedEnsemble:
        """Read what `save` wrote (`TrainedModel.load` calls this for family `seed_ensemble`)."""
        seeds = [int(s) for s in meta["seeds"]]
        return cls([TrainedModel.load(Path(dir) / f"seed-{s}") for s in seeds], seeds)
