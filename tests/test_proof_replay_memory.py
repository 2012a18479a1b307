"""``sentinel replay`` streams: its peak memory does not grow with the file (a 186 MB file once took 1.7 GB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_event

ROOT = Path(__file__).resolve().parent.parent
GROWTH_BOUND_MB = 30
# Runs one command and prints the peak RSS (KiB on Linux) of its process tree: a fresh parent, so no other
# child of the test process counts.
PEAK_RSS = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.PIPE, text=True); print(r.returncode, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stderr[-500:], file=sys.stderr)")


def write_events(path: Path, count: int) -> None:
    """A day's traffic, one event a second: sign-ins (some failing), lock-outs, token creations; mostly
    unique users and addresses, so rule state and alerts keep coming."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            published = f"2026-03-{1 + i // 86_400:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"
            kind = i % 50
            if kind == 0:
                event = make_event(f"e-{i}", "user.account.lock", published)
            elif kind == 1:
                event = make_event(f"e-{i}", "system.api_token.create", published)
            else:
                event = make_event(f"e-{i}", "user.session.start", published,
                                   outcome={"result": "FAILURE" if kind % 3 == 0 else "SUCCESS"},
                                   actor={"alternateId": f"user{i % 20_000}@example.com", "type": "User"},
                                   client={"ipAddress": f"198.51.{i // 250 % 256}.{i % 250}"})
            out.write(json.dumps(event) + "\n")


def peak_rss_mb(path: Path) -> float:
    command = [sys.executable, "-m", "sentinel", "replay", "--rules", str(ROOT / "rules"), str(path)]
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], capture_output=True, text=True,
                            timeout=900, cwd=ROOT)
    code, kib = result.stdout.split()
    assert code == "0", result.stderr
    assert "replayed" in result.stderr
    return int(kib) / 1024


@pytest.mark.proof
def test_replay_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    small, large = tmp_path / "50k.jsonl", tmp_path / "200k.jsonl"
    write_events(small, 50_000)
    write_events(large, 200_000)
    small_mb, large_mb = peak_rss_mb(small), peak_rss_mb(large)
    assert large_mb - small_mb < GROWTH_BOUND_MB, (
        f"peak RSS {small_mb:.0f} MB for 50k events, {large_mb:.0f} MB for 200k "
        f"({large.stat().st_size / 1e6:.0f} MB file)")
