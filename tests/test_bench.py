"""The benchmarks run on CPU, so CI catches a benchmark that no longer works."""

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
    rows = {row[0]: row for row in table if len(row) == 6 and row[1] == "sslgrid"}
    for model in ["apc", "mockingjay", "tera", "cpc", "wav2vec", "wav2vec2"]:
        assert model in rows, proc.stdout
        assert float(rows[model][4]) > 0  # audio-seconds per second
    assert rows["apc"][5] == "1.00"  # the in-run reference
    assert "wav2vec2 speed, sslgrid / transformers:" in proc.stdout
