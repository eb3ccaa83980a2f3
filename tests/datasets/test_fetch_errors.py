"""Every way a fetch can fail ends in one `error:` line with the fix and exit code 1, through the real CLI.

A loopback HTTP server (`fixtures_datasets.FileServer`) plays the misbehaving source of a custom dataset.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_datasets import custom, dead_url, npz_bytes, sha256, write_params
from sklearn.datasets import load_digits

from conftest import run_cli


@pytest.fixture(autouse=True)
def _short_backoff(monkeypatch):
    """The CLI's download retries wait 0.05, 0.1, 0.2 s instead of 1, 2, 4 s: the same tries, without the wait."""
    monkeypatch.setenv("TUNEBENCH_BACKOFF_S", "0.05")


@pytest.fixture(scope="module")
def payload() -> bytes:
    b = load_digits()
    return npz_bytes(x_train=b.data[:300], y_train=b.target[:300], x_test=b.data[300:400], y_test=b.target[300:400])


def error_line(proc) -> str:
    """The one `error:` line of a failed command (no traceback); details may follow, indented."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    after = proc.stderr.split(lines[0], 1)[1].splitlines()
    assert all(not line.strip() or line.startswith("  ") for line in after), proc.stderr[-3000:]
    return lines[0]


def no_leftovers(raw: Path) -> None:
    """Nothing half-written: no manifest, no data file, no temporary file (quarantined copies aside)."""
    left = sorted(p.name for p in raw.iterdir() if p.name != ".quarantine") if raw.exists() else []
    assert left == [], left


@pytest.mark.parametrize(
    ("mode", "reason", "advice"),
    [
        ("status-404", "HTTP 404 Not Found", "check the URL (`datasets.mine.source.url` in params.yaml)"),
        ("status-500", "HTTP 500", "check the network connection"),
        ("html", "server sent an HTML page", "the server sent a web page"),
        ("sniff-html", "server sent an HTML page", "the server sent a web page"),
        ("truncate", "truncated download", "check the network connection"),
        ("hangup", "connection failed", "check the network connection"),
    ],
)
def test_server_failures(tmp_path, server, payload, mode, reason, advice):
    url = server.add("mine.npz", payload, mode=mode)
    proc = run_cli("fetch", "--dataset", "mine", cwd=write_params(tmp_path, custom(url, payload)), timeout=120)
    line = error_line(proc)
    assert line.startswith("error: cannot fetch dataset 'mine'")
    for part in (url, reason, advice, "`tunebench fetch --dataset mine`"):
        assert part in proc.stderr
    assert "check the pinned hash" not in proc.stderr
    no_leftovers(tmp_path / "data" / "raw" / "mine")


def test_offline(tmp_path, payload):
    url = dead_url("mine.npz")
    proc = run_cli("fetch", "--dataset", "mine", cwd=write_params(tmp_path, custom(url, payload)), timeout=120)
    error_line(proc)
    assert "connection failed" in proc.stderr and "(gave up after 4 tries)" in proc.stderr
    assert "check the network connection" in proc.stderr
    no_leftovers(tmp_path / "data" / "raw" / "mine")


def test_wrong_hash_advises_the_pin_and_quarantines_one_copy(tmp_path, server, payload):
    bad = payload[:-64] + b"\0" * 64
    url = server.add("mine.npz", bad)
    project = write_params(tmp_path, custom(url, payload))
    for _ in range(3):  # each retry downloads the same wrong bytes again
        proc = run_cli("fetch", "--dataset", "mine", cwd=project, timeout=120)
        error_line(proc)
        assert f"SHA256 {sha256(bad)} != pinned {sha256(payload)}" in proc.stderr
        assert "check the pinned hash (`datasets.mine.source.sha256` in params.yaml) against the source" in proc.stderr
        assert "network" not in proc.stderr
    raw = tmp_path / "data" / "raw" / "mine"
    (copy,) = (raw / ".quarantine").iterdir()  # one copy per content, however often it came
    assert copy.read_bytes() == bad and copy.name == f"mine.npz.corrupt-{sha256(bad)[:16]}"
    no_leftovers(raw)
    assert len(server.requests("mine.npz")) == 3


def test_preprocess_before_fetch_names_the_command(tmp_path):
    proc = run_cli("preprocess", "--dataset", "digits", cwd=write_params(tmp_path, "builtin", "digits"), timeout=120)
    line = error_line(proc)
    assert "dataset 'digits' is not fetched yet" in line and "`tunebench fetch --dataset digits`" in line
