"""One rank of tests/test_ddp.py (gloo, CPU, one thread), started with torchrun's environment
(``torchrun --nproc_per_node 2 tests/ddp_worker.py OUT`` runs it too).

Runs four short trainings in one process group and writes what it saw to ``<out>/rank<R>.json`` after
each phase (a phase that hangs leaves the earlier ones for the report):

* ``ref``    — 2 epochs × 2 steps: per step this rank's step-generator state (hash) and loss; at the
  end a hash of the student + head weights;
* ``cut``    — the same run, rank 1 alone calls ``request_stop()`` after step 3: both ranks must stop;
* ``resume`` — ``cut`` again (resume=True): it must end where ``ref`` ended;
* ``nan``    — rank 1's loss is NaN from step 2 on (rank 0's stays finite): both ranks must raise;
* ``ce0``    — rank 1's CE is exactly 0 (rank 0's is not): the first-epoch "CE = 0" guard
  must decide on both ranks' CE together (before, rank 1 alone raised and rank 0 waited forever).

``save_checkpoint`` is wrapped to record which rank wrote.
"""
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

import lqlib.train as train_mod  # noqa: E402
import lqlib.train_state as train_state  # noqa: E402  (the trainer's checkpointing)
from lqlib.distiller import Distiller  # noqa: E402
from lqlib.models.interface import unwrap  # noqa: E402

OUT = Path(sys.argv[1])
RANK = int(os.environ["RANK"])
BASE = dict(data="synthetic", synthetic={"num_classes": 4, "images_per_class": 4}, backbone="ir_cbam_tiny",
            epochs=2, batch_size=4, lr=0.05, num_workers=0, progress=False, head_kw={"s": 16.0, "m": 0.2},
            scales=[2, 4, 8], method="none", role="student")
results: dict = {"rank": RANK, "saves": []}
current: dict = {}


def _hash(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy()).hexdigest()[:16]


_inputs = Distiller.inputs


def _recording_inputs(self, hr, generator):
    current.setdefault("gen", []).append(_hash(generator.get_state()))
    return _inputs(self, hr, generator)


Distiller.inputs = _recording_inputs
_save_checkpoint = train_state.save_checkpoint


def _recording_save(state, run_dir):
    results["saves"].append([Path(run_dir).name, state["step"]])
    return _save_checkpoint(state, run_dir)


train_state.save_checkpoint = _recording_save


_forward = Distiller.forward


def _nan_on_rank1(self, hr, labels, generator, progress, index=None):
    """Phase ``nan``: rank 1's cross-entropy becomes NaN from step 2 on; phase ``ce0``: it is 0 throughout."""
    total, parts = _forward(self, hr, labels, generator, progress, index)
    if current.get("inject") and RANK == 1 and progress.step >= (1 if current["inject"] == "nan" else 0):
        factor = float("nan") if current["inject"] == "nan" else 0.0
        parts = {**parts, "ce": parts["ce"] * factor}
        total = total * factor
    return total, parts


Distiller.forward = _nan_on_rank1


def _digest(tensors) -> str:
    return hashlib.sha256(b"".join(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
                                   for t in tensors)).hexdigest()[:16]


def weights_hashes(tr) -> tuple[str, str]:
    """(the trained parameters, the whole state: parameters + BN statistics) of student and head. DDP
    keeps the parameters equal on every rank; BN statistics are each rank's own until the next forward
    broadcasts rank 0's (what rank 0 checkpoints)."""
    d = tr.distiller
    params = [p for m in (unwrap(d.student), d.head) for _, p in sorted(m.named_parameters())]
    state = [v for m in (unwrap(d.student), d.head) for _, v in sorted(m.state_dict().items())]
    return _digest(params), _digest(state)


def phase(name, cfg, callbacks=()):
    current.clear()
    current["losses"], current["inject"] = [], name if name in ("nan", "ce0") else None
    cbs = [lambda t, e, d, s: current["losses"].append(float(t.last_parts["ce"].detach())), *callbacks]
    tr = train_mod.Trainer(train_mod.TrainConfig(name=name, out_dir=str(OUT / name), **{**BASE, **cfg}),
                           callbacks=cbs)
    t0 = time.time()
    try:
        tr.fit()
        current["outcome"] = "finished"
    except Exception as e:  # noqa: BLE001 — the test reads which exception each rank saw
        current["outcome"] = type(e).__name__
        current["message"] = str(e)
    current["raised_at"] = time.time()
    current["seconds"] = round(time.time() - t0, 2)
    current["weights"], current["state"] = weights_hashes(tr) if hasattr(tr, "distiller") else (None, None)
    current["world"] = tr.world
    results[name if name not in results else f"{name}-resume"] = dict(current)
    (OUT / f"rank{RANK}.json").write_text(json.dumps(results, indent=1))


def stop_on_rank1(trainer, epoch, done, step):
    if RANK == 1 and step == 3:
        current["requested_at"] = time.time()
        trainer.request_stop()


phase("ref", {})
phase("cut", {}, [stop_on_rank1])
phase("cut", {})  # resume=True (the default): continues from rank 0's checkpoint
phase("nan", {})
phase("ce0", {"synthetic": {"num_classes": 4, "images_per_class": 2}, "batch_size": 2})
