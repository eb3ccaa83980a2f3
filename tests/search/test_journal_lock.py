"""A search killed while Optuna released the journal's lock leaves `<journal>.lock<uuid>.rename` in the study
folder (a DVC output); the search stage removes such files once no release can still own them."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileOpenLock

from pipeline.search.journal import SafeJournalFileBackend, remove_stale_lock_renames


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def test_a_lock_left_renamed_by_a_killed_release_is_removed_once_stale(tmp_path):
    journal = tmp_path / "optuna.journal"
    study = optuna.create_study(storage=JournalStorage(SafeJournalFileBackend(journal)), study_name="s")
    study.optimize(_objective, n_trials=2)
    JournalFileOpenLock(str(journal)).acquire()
    left = Path(f"{journal}.lock0123abcd.rename")
    os.rename(f"{journal}.lock", left)  # Optuna's release, killed between its rename and its unlink
    other = tmp_path / "other.journal.lock0123abcd.rename"
    other.write_text("")  # another journal's: not this one's to remove

    assert remove_stale_lock_renames(journal, min_age_s=60) == []  # as young as a release in progress: kept
    assert left.exists()
    assert remove_stale_lock_renames(journal, min_age_s=0) == [left]
    assert not left.exists() and other.exists()
    study = optuna.load_study(storage=JournalStorage(SafeJournalFileBackend(journal)), study_name="s")
    study.optimize(_objective, n_trials=1)  # the lock still works
    assert len(study.trials) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.journal", "other.journal.lock0123abcd.rename"]
