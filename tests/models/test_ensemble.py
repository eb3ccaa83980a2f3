"""A seed ensemble averages its members, saves and loads like any model, and keeps each member."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer

from pipeline.models import TrainedModel, get_family
from pipeline.models.ensemble import SeedEnsemble


def test_seed_ensemble_averages_members_and_round_trips(tmp_path):
    d = load_breast_cancer()
    X = ((d.data - d.data.mean(0)) / d.data.std(0)).astype(np.float32)
    y = d.target
    family = get_family("numpy_mlp")
    members = [
        family.train({"units": [16], "lr": 1e-2}, X[:400], y[:400], None, None, task="binary", n_classes=None,
                     epochs=3, seed=s)
        for s in (0, 1, 2)
    ]  # fmt: skip
    ens = SeedEnsemble(members, [0, 1, 2])
    preds = [m.predict(X[400:]) for m in members]
    assert not np.allclose(preds[0], preds[1])  # other seeds, other models
    np.testing.assert_allclose(ens.predict(X[400:]), np.mean(preds, axis=0))
    assert ens.single() is members[0] and ens.history == members[0].history
    ens.save(tmp_path / "e")
    back = TrainedModel.load(tmp_path / "e")
    assert isinstance(back, SeedEnsemble) and back.seeds == [0, 1, 2]
    np.testing.assert_allclose(back.predict(X[400:]), ens.predict(X[400:]), rtol=1e-6)
    np.testing.assert_allclose(back.members[2].predict(X[400:]), preds[2], rtol=1e-6)
