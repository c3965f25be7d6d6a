"""Check the PyTorch port of face-api.js's FaceRecognitionNet against the package's own TF.js runtime.

Needs node and a folder with the package and its TF.js runtime installed by npm, e.g.::

    mkdir -p /tmp/faceapi-node && cd /tmp/faceapi-node && npm init -y && \\
        npm install @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
    python bench/faceapi_node_check.py --node-modules /tmp/faceapi-node/node_modules [--n 8] [--backend cpu]

Takes ``--n`` real LFW faces (lqlib's 112×112 crops), warps them to 150×150 chips with the teacher's
spec (float RGB 0..255), and computes descriptors twice: with the cached PyTorch port, and in node
with ``dist/face-api.node-wasm.js`` (``faceRecognitionNet.loadFromDisk`` on the package's own
``model/`` folder, ``computeFaceDescriptor`` per chip — the package normalises the chip itself).
Prints and writes ``<out>/faceapi_node_check.json``: max |Δ| over all descriptor entries, and the
largest Euclidean distance between the two descriptors of one face.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lqlib import io, paths
from lqlib.images import normalize
from lqlib.teachers import build_teacher
from lqlib.teachers.spec import LQLIB_MEAN, LQLIB_STD

NODE_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const tf = faceapi.tf;
(async () => {
  const [chipsFile, n, outFile, backend] = process.argv.slice(2);
  await tf.setBackend(backend); await tf.ready();
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const buf = fs.readFileSync(chipsFile);
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const size = 150 * 150 * 3;
  const out = new Float32Array(Number(n) * 128);
  for (let i = 0; i < Number(n); i++) {
    const x = tf.tensor3d(all.slice(i * size, (i + 1) * size), [150, 150, 3], 'float32');
    const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(x);
    out.set(d, i * 128);
    x.dispose();
  }
  fs.writeFileSync(outFile, Buffer.from(out.buffer));
  console.log(JSON.stringify({backend: tf.getBackend(), tfjs: tf.version.tfjs || tf.version['tfjs-core']}));
})();
"""


def lfw_faces(n: int) -> tuple[torch.Tensor, list[str]]:
    """``n`` LFW images (every 997th of the sorted paths: different people) as uint8 RGB [n, 3, 112, 112]."""
    from PIL import Image

    files = sorted((paths.data_dir() / "lfw" / "images").glob("*/*.jpg"))[:: 997][:n]
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), [f.name for f in files]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node-modules", required=True, help="node_modules with @vladmandic/face-api and @tensorflow/tfjs")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--backend", default="cpu", help="TF.js backend: cpu (pure JS) or wasm")
    ap.add_argument("--out", default="bench/results")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    teacher = build_teacher("faceapi-resnet")
    images, names = lfw_faces(args.n)
    with torch.no_grad():
        chips = teacher.spec.resize(normalize(images)) * LQLIB_STD + LQLIB_MEAN  # float RGB 0..255, 150×150
        mean = torch.tensor(teacher.spec.mean).view(1, 3, 1, 1)
        ours = teacher.model((chips - mean) / 255.0).numpy()
    with tempfile.TemporaryDirectory(prefix="lqlib-faceapi-") as tmp:
        tmp = Path(tmp)
        (tmp / "check.cjs").write_text(NODE_SCRIPT)
        chips.permute(0, 2, 3, 1).contiguous().numpy().astype("<f4").tofile(tmp / "chips.f32")
        proc = subprocess.run(["node", str(tmp / "check.cjs"), str(tmp / "chips.f32"), str(len(names)),
                               str(tmp / "desc.f32"), args.backend], capture_output=True, text=True,
                              env={**os.environ, "NODE_PATH": str(Path(args.node_modules).resolve())})
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        runtime = json.loads(proc.stdout.strip().splitlines()[-1])
        theirs = np.fromfile(tmp / "desc.f32", dtype="<f4").reshape(len(names), 128)
    diff = np.abs(ours - theirs)
    result = {"n": len(names), "images": names, "runtime": runtime, "max_abs_diff": float(diff.max()),
              "max_euclidean": float(np.linalg.norm(ours - theirs, axis=1).max()),
              "max_abs_descriptor": float(np.abs(theirs).max()),
              "min_norm_descriptor": float(np.linalg.norm(theirs, axis=1).min())}
    print(json.dumps(result, indent=1))
    io.write_json(paths.resolve(args.out) / "faceapi_node_check.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
