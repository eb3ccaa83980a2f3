"""benchmarks/text_ceiling.py: linear models on the pipeline's own n-gram features, C chosen on validation."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.runner import figures
from benchmarks.text_ceiling import nb_ratio, parse_features
from conftest import ROOT


def test_nb_ratio_favours_the_words_of_the_positive_class():
    x = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 1, 1]], dtype=np.float32))
    r = nb_ratio(x, np.array([1, 1, 0, 0]))
    assert r[0] > 0 > r[1] and abs(r[2]) < 1e-12  # a word in both classes alike weighs nothing
    assert parse_features("1,2:30000") == ([1, 2], 30000)


@pytest.mark.slow
@pytest.mark.dvc  # `project`: dvc repro
def test_ceiling_on_rt_polarity_of_the_project(project, tmp_path):
    proj, _ = project
    out = tmp_path / "ceiling.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.text_ceiling", "--project", str(proj),
         "--features", "1:2000", "1,2:4000", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = figures(out)
    one, two = result["rows"]
    assert (one["ngrams"], one["columns"], two["ngrams"], two["columns"]) == ([1], 2000, [1, 2], 4000)
    for row in result["rows"]:
        for model in ("logistic", "nb_logistic"):
            fit = row[model]
            assert 0.6 < fit["test"] <= 1 and 0.6 < fit["val"] <= 1  # well above the 0.58 majority baseline
            assert fit["C"] in (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    assert "NB-logistic" in proc.stdout and result["split"]["seed"] == 42
