"""The Python API fuzz target (tests/fuzz/fuzz_api.py, atheris) in CI, issue #14.

- every reproduction in tests/fuzz/regressions/ must now end in a result or a Python exception;
- a bounded fuzzing run (BLFFT_FUZZ_SECONDS, default 75 s, fixed seed BLFFT_FUZZ_SEED, starting
  from tests/fuzz/corpus/) must find no crash, timeout (10 s per input), memory blow-up
  (4 GiB RSS) or wrong result;
- the seed files match their descriptions in tests/fuzz/make_corpus.py.

Each runs the target in a subprocess (a crash must not take pytest down). On a failure the
message has the fuzzer's report and each failing input decoded as the call it makes
(fuzz_api.py --describe). Longer runs by hand: see fuzz_api.py's docstring, e.g.

    BLFFT_FUZZ_SECONDS=3600 BLFFT_FUZZ_SEED=7 pytest tests/py/test_fuzz.py -k bounded
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]
FUZZ_DIR = ROOT / "tests" / "fuzz"
TARGET = FUZZ_DIR / "fuzz_api.py"
SECONDS = int(os.environ.get("BLFFT_FUZZ_SECONDS", "75"))
SEED = int(os.environ.get("BLFFT_FUZZ_SEED", "1"))
LIMITS = ["-timeout=10", "-rss_limit_mb=4096", "-max_len=512"]
REGRESSIONS = sorted((FUZZ_DIR / "regressions").iterdir())


def _run(args, tmp_path, timeout):
    cmd = [sys.executable, str(TARGET), *args, *LIMITS, f"-artifact_prefix={tmp_path}/"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, text=True,
                              errors="replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"fuzzer did not stop within {timeout} s (libFuzzer's -timeout did not fire)"
                    f"\n{' '.join(cmd)}\n{out[-6000:]}")
    return cmd, proc


def _report(cmd, proc, tmp_path):
    """The fuzzer's own report (tail) and every artifact, decoded."""
    lines = [" ".join(cmd), f"exit code {proc.returncode}", proc.stdout[-6000:]]
    artifacts = sorted(p for p in tmp_path.iterdir()
                       if re.match(r"(crash|timeout|oom|leak|slow-unit)-", p.name))
    running = re.findall(r"^Running: (.+)$", proc.stdout, flags=re.M)
    if running and not artifacts:  # inputs given as files: the last one started is the culprit
        artifacts = [Path(running[-1])]
    for p in artifacts:
        d = subprocess.run([sys.executable, str(TARGET), "--describe", str(p)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines.append(f"--- {p.name} ({p.read_bytes().hex()}):\n{d.stdout[-3000:]}")
    return "\n".join(lines)


def test_corpus_matches_descriptions():
    proc = subprocess.run([sys.executable, str(FUZZ_DIR / "make_corpus.py"), "--check"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, (
        "tests/fuzz seed files differ from make_corpus.py (run it to rewrite them):\n"
        + proc.stdout
    )


def test_regression_inputs(tmp_path):
    """The known bad inputs, in one process: libFuzzer runs each file once (-timeout and
    -rss_limit_mb apply) and stops at the first failure, whose file its report names
    ("Running: ...")."""
    assert REGRESSIONS
    cmd, proc = _run([str(p) for p in REGRESSIONS], tmp_path, timeout=300)
    assert proc.returncode == 0, _report(cmd, proc, tmp_path)
    for p in REGRESSIONS:
        assert f"Executed {p}" in proc.stdout, _report(cmd, proc, tmp_path)


def test_fuzz_bounded(tmp_path):
    """Fuzz for SECONDS from the seed corpus; new inputs go to a temporary folder."""
    work = tmp_path / "corpus"
    work.mkdir()
    args = [str(work), str(FUZZ_DIR / "corpus"), f"-seed={SEED}", f"-max_total_time={SECONDS}",
            "-print_final_stats=1"]
    cmd, proc = _run(args, tmp_path, timeout=SECONDS + 240)
    assert proc.returncode == 0, _report(cmd, proc, tmp_path)
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stdout)
    assert m and int(m.group(1)) >= 100, "the fuzzer ran too few inputs:\n" + proc.stdout[-3000:]
