"""Quiet terminals: TensorFlow's start-up lines are dropped, real warnings and errors still show."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT

from tfqa.apps.quiet import NOISE

STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796292071.089604    5139 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "I0000 00:00:1796292071.207176    5139 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "E0000 00:00:1796292079.420531    5139 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
]


def test_noise_is_exactly_the_startup_lines():
    assert all(NOISE.search(line) for line in STARTUP)
    for real in ("E0000 00:00:1796292079.420531    5139 op_kernel.cc:1830] OP_REQUIRES failed: out of memory",
                 "W0000 00:00:1796292079.420531    5139 loader.cc:12] could not read the warm-up file",
                 "tfqa: warning: 3 predictions are for questions not in dev.json", "Traceback (most recent call last):"):
        assert not NOISE.search(real), real


def test_a_quiet_process_shows_only_real_messages():
    script = """
import os, sys, warnings
from tfqa.apps.quiet import quiet_startup
assert quiet_startup()
import tensorflow as tf
tf.constant(1) + 1
os.write(2, b"E0000 00:00:1.0 1 op_kernel.cc:1] a real C++ error\\n")
warnings.warn("a real Python warning")
print("tfqa: error: a line of tfqa's own", file=sys.stderr)
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert [line for line in lines if "real" not in line and "tfqa" not in line and "warnings.warn" not in line] == []
    assert any("a real C++ error" in line for line in lines) and any("a real Python warning" in line for line in lines)
    assert any("tfqa: error: a line of tfqa's own" == line for line in lines)
