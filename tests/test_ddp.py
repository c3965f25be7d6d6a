"""DDP across 2 CPU processes (gloo), as ``torchrun --nproc_per_node 2`` starts them.

tests/ddp_worker.py is one rank; this test starts two with torchrun's environment and reads what each
saw. A hang (a collective one rank never matches) is killed after ``TIMEOUT`` seconds and FAILS the
test instead of hanging CI.
"""
import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 120  # the two ranks need ~20 s on 2 shared cores


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in ("seconds", "img_per_s")} for r in csv.DictReader(f)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Both ranks as processes of their own with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT), so the test holds every process it started and kills them on a hang."""
    out = tmp_path_factory.mktemp("ddp")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LQLIB_COMPILE": "0",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
           "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    if sys.platform == "linux":  # gloo on the loopback device, whatever the host name resolves to
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    procs = []
    for rank in (0, 1):
        with open(out / f"rank{rank}.log", "w") as log:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out)], cwd=root, stdout=log,
                                          stderr=subprocess.STDOUT,
                                          env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
    deadline = time.monotonic() + TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        seen = {p.name: [k for k in json.loads(p.read_text()) if k not in ("rank", "saves")]
                for p in out.glob("rank*.json")}
        pytest.fail(f"2-rank DDP run hung (killed after {TIMEOUT} s); phases each rank finished: {seen}\n"
                    + "\n".join((out / f"rank{r}.log").read_text()[-1500:] for r in (0, 1)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = "\n".join((out / f"rank{r}.log").read_text()[-3000:] for r in (0, 1))
    assert [p.returncode for p in procs] == [0, 0], logs
    r = [json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1)]
    return out, r[0], r[1], logs


def test_two_ranks_train_as_one(ranks):
    out, r0, r1, _ = ranks
    a, b = r0["ref"], r1["ref"]
    assert a["outcome"] == b["outcome"] == "finished" and a["world"] == b["world"] == 2
    assert len(a["gen"]) == len(b["gen"]) == 4  # 16 images / 2 ranks / batch 4 = 2 steps × 2 epochs
    # per-rank seeds: each rank draws its own flips / degradations ...
    assert all(x != y for x, y in zip(a["gen"], b["gen"]))
    assert a["losses"] != b["losses"]  # ... on its own shard
    # gradients are averaged: different data, identical weights after every step
    assert a["weights"] == b["weights"]


def test_a_stop_on_one_rank_stops_both(ranks):
    out, r0, r1, _ = ranks
    a, b = r0["cut"], r1["cut"]
    assert a["outcome"] == b["outcome"] == "TrainingInterrupted", (a, b)
    assert "epoch 1 batch 1" in a["message"] and a["message"] == b["message"]  # the same step on both
    assert a["raised_at"] - b["requested_at"] < 10 and b["raised_at"] - b["requested_at"] < 10
    assert a["weights"] == b["weights"]


def test_rank0_alone_writes_checkpoints_and_resume_is_exact(ranks):
    out, r0, r1, _ = ranks
    assert r1["saves"] == []
    assert ["cut", 3] in r0["saves"]  # the stop's checkpoint (mid epoch 2), then the resumed epoch end
    a, b = r0["cut-resume"], r1["cut-resume"]
    assert a["outcome"] == b["outcome"] == "finished"
    assert len(a["gen"]) == 1  # one step left after the stop
    assert a["gen"] == r0["ref"]["gen"][3:] and b["gen"] == r1["ref"]["gen"][3:]  # each rank's own stream
    assert a["weights"] == b["weights"] == r0["ref"]["weights"]  # ends where the uninterrupted run ended
    assert a["state"] == r0["ref"]["state"]  # BN statistics too (rank 0's, which it checkpoints)
    assert _metrics(out / "cut") == _metrics(out / "ref")


def test_a_nan_on_one_rank_stops_both(ranks):
    _, r0, r1, _ = ranks
    a, b = r0["nan"], r1["nan"]
    assert a["outcome"] == b["outcome"] == "NonFiniteLossError", (a, b)
    assert "'ce'" in a["message"] and "at step 1" in a["message"] and a["message"] == b["message"]
    assert abs(a["raised_at"] - b["raised_at"]) < 10


def test_the_degenerate_problem_guard_decides_for_all_ranks(ranks):
    _, r0, r1, _ = ranks
    assert r0["ce0"]["outcome"] == r1["ce0"]["outcome"] == "finished", (r0["ce0"], r1["ce0"])
