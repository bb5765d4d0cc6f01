"""The benchmarks run on CPU, so CI catches a benchmark that no longer works."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pretrain_throughput_benchmark_reports_every_method_and_the_reference():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "pretrain_throughput.py"),
            "--steps",
            "1",
            "--warmup",
            "0",
            "--batch",
            "2",
            "--seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line.split() for line in proc.stdout.splitlines()]
    rows = {row[0]: row for row in table if len(row) == 7 and row[1] == "sslgrid"}
    for model in ["apc", "mockingjay", "tera", "cpc", "wav2vec", "wav2vec2"]:
        assert model in rows, proc.stdout
        assert float(rows[model][4]) > 0  # audio-seconds per second
    assert rows["apc"][5] == "1.00"  # the in-run reference
    assert "wav2vec2 speed, sslgrid / transformers:" in proc.stdout
    # The wav2vec 2.0 table: the reference and sslgrid's step, with ratios to the reference.
    w2v = {
        " ".join(row[:-5]): row[-5:]
        for row in table
        if len(row) >= 7 and row[0] in ("transformers", "sslgrid")
    }
    assert w2v["transformers fp32 sdpa"][3] == "1.00", proc.stdout
    assert float(w2v["sslgrid fp32"][1]) > 0


def test_pretrain_throughput_loss_curves_compare_sslgrid_with_the_reference(tmp_path):
    """The loss-curve section trains both implementations from the same weights."""
    report = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "pretrain_throughput.py"),
            "--models",
            "wav2vec2",
            "--no-methods-table",
            "--no-wav2vec2-table",
            "--batch",
            "2",
            "--seconds",
            "1",
            "--curve-steps",
            "6",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    curves = json.loads(report.read_text())["curves"]
    assert set(curves["curves"]) == {"reference", "reference-rerun", "sslgrid"}
    assert all(len(c) == 6 for c in curves["curves"].values())
    # Same weights, same data: the losses agree to within the draws' noise (one update's loss
    # moves by up to ~0.2 with the mask and distractor draws at this size; the mean of six less).
    means = [sum(c) / len(c) for c in curves["curves"].values()]
    assert max(means) - min(means) < 0.2, means
