"""lqlib.cam: Grad-CAM of face similarity through pytorch-grad-cam."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lqlib.cam import FaceCAM, FaceSimilarityTarget, face_gradcam, resolve_target_layer
from lqlib.degrade import degrade
from lqlib.models import build_backbone
from lqlib.evaluation import embed as _embed


def embed(model, images):
    return _embed(model, images if images.dim() == 4 else images[None], flip=False)[0]


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_target_is_cosine():
    g = torch.Generator().manual_seed(0)
    out, ref = torch.randn(3, 16, generator=g), torch.randn(3, 16, generator=g)
    for r in (ref[0], ref):  # one shared reference, or one per sample
        expected = F.cosine_similarity(out, r.expand_as(out), dim=-1)
        torch.testing.assert_close(FaceSimilarityTarget(r)(out), expected)
    torch.testing.assert_close(FaceSimilarityTarget(ref[1])(out[0]), F.cosine_similarity(out[0], ref[1], dim=0))
    with torch.inference_mode():  # embeddings made under inference_mode must still work in autograd
        frozen = ref[0] * 1
    x = out[0].clone().requires_grad_(True)
    FaceSimilarityTarget(frozen)(x).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_face_gradcam_maps(tiny, faces):
    tiny.train()
    reference = embed(tiny, faces)          # the HR faces are the references ...
    lq = degrade(faces, 4)                  # ... the probes are their ×4 copies
    assert _hooks(tiny) == 0
    maps = face_gradcam(tiny, lq, reference)
    assert maps.shape == (2, 112, 112) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert (maps.reshape(2, -1).std(axis=1) > 1e-3).all(), "maps are not constant"
    assert _hooks(tiny) == 0, "every hook is released"
    assert tiny.training, "the training flag is restored"
    tiny.eval()


def test_facecam_context_manager_and_layer_paths(tiny, faces):
    assert resolve_target_layer(tiny, -1) == "stages.3.0"
    assert resolve_target_layer(tiny, 1) == "stages.1.0"
    with pytest.raises(AttributeError):
        resolve_target_layer(tiny, "stages.9.0")
    with pytest.raises(ValueError, match="not in this backbone"):
        resolve_target_layer(tiny, 4)
    mbf = build_backbone("mobilefacenet_esca", embedding_size=32)  # blocks.0-14, stages 1-3
    assert resolve_target_layer(mbf, -1) == "blocks.14" and resolve_target_layer(mbf, 1) == "blocks.4"
    with pytest.raises(ValueError):
        resolve_target_layer(mbf, 0)
    reference = embed(tiny, degrade(faces[0], 2))[0]   # one reference shared by both probes
    with FaceCAM(tiny, stage=2) as cam:
        assert _hooks(tiny) == 1             # the tap hook on the target block
        a = cam(faces, reference)
        b = cam(faces, reference)
    assert _hooks(tiny) == 0
    np.testing.assert_allclose(a, b, atol=1e-6)  # deterministic, state does not leak between calls
    assert a.shape == (2, 112, 112)
    c = face_gradcam(tiny, faces[1], reference, stage="stages.3.0.bn3", method="gradcam++")
    assert c.shape == (1, 112, 112) and 0.0 <= c.min() and c.max() <= 1.0 and c.std() > 1e-3
    with pytest.raises(ValueError, match="unknown CAM method"):
        FaceCAM(tiny, method="nope")
    assert _hooks(tiny) == 0
