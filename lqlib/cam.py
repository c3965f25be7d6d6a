"""Grad-CAM for face verification, on top of pytorch-grad-cam.

pytorch-grad-cam explains a *class score*; a face-recognition backbone outputs an embedding and
the score that matters is the cosine similarity with another face's embedding. So:

* :class:`FaceSimilarityTarget` — a pytorch-grad-cam target: called on the model output
  (an embedding (E,), or a batch (B, E)) it returns the cosine similarity with a reference
  embedding. The CAM then shows which pixels make the probe look like the reference.
* :class:`FaceCAM` — context manager around a pytorch-grad-cam method on one target layer::

      with FaceCAM(student, stage=3) as cam:
          reference, _ = lqlib.evaluation.embed(teacher, hr_faces, flip=False)
          maps = cam(lr_faces, reference)          # (B, H, W) in [0, 1]

  The target layer is a module path (``model.get_submodule("stages.3.1")``, torchdistill style) or
  a stage label (the stage's last block; default -1, the last stage). Hooks are removed and the
  model's training flag restored on exit.
* :func:`face_gradcam` — the one-call version.

Backbone blocks return ``(output, AttentionMaps)`` tuples, which pytorch-grad-cam cannot hook (it
needs a module whose output is a tensor). :class:`FaceCAM` therefore puts a forward hook on the
target module that routes its tensor output through a private ``nn.Identity`` *tap* and hands the
tap to pytorch-grad-cam; modules that already return a tensor go through the same tap.

Pitfall: the reference must be another face (or another quality of the face). With the probe's own
embedding as reference the similarity is at its maximum, 1, its gradient vanishes and the map is
empty.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import EigenGradCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from torch import nn

from .images import as_batch, normalize
from .models.interface import block_paths, stage_block_path

#: gradient-based pytorch-grad-cam methods usable with :class:`FaceSimilarityTarget`.
CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigengradcam": EigenGradCAM,
}


class FaceSimilarityTarget:
    """pytorch-grad-cam target: cosine similarity of the model output with ``reference_embedding``.

    ``reference_embedding``: (E,) or, for batched calls, (B, E). Called on an (E,) output it
    returns a scalar; on a (B, E) output a (B,) tensor (the reference broadcasts).
    """

    def __init__(self, reference_embedding):
        ref = torch.as_tensor(reference_embedding)
        with torch.inference_mode(False):
            # a clone outside inference mode is an ordinary tensor: embeddings computed under
            # torch.inference_mode (e.g. by lqlib.evaluation.embed) cannot otherwise enter autograd
            self.reference = ref.detach().clone().float()

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        ref = self.reference.to(device=model_output.device, dtype=model_output.dtype)
        return F.cosine_similarity(model_output, ref, dim=-1)


def resolve_target_layer(model: nn.Module, stage: int | str = -1) -> str:
    """Module path of the CAM target.

    A string is a module path (``"stages.3.1"``, ``"blocks.14.project"``), checked and returned. An
    int is a stage label of ``model.block_stage`` (IResNet 0–3, MobileFaceNet 1–3; negative values
    count from the last stage) and picks that stage's last block.
    """
    if isinstance(stage, str):
        model.get_submodule(stage)  # raises AttributeError naming the missing part
        return stage
    return stage_block_path(model, stage)


class FaceCAM:
    """Class-activation maps of face similarity on one layer of a backbone (a context manager).

    Args:
        model: backbone, ``model(x)`` → (B, E) embedding.
        stage: stage label (its last block is the target; -1 = the last stage) or a module path such
            as ``"stages.3.1"`` or ``"stages.2.0.bn3"`` (see :func:`resolve_target_layer`).
        method: a key of :data:`CAM_METHODS` (``gradcam``, ``gradcam++``, ``hirescam``, ...).

    Calling it: ``cam(images_uint8, reference)`` → (B, H, W) float32 maps in [0, 1] at the image size.
    """

    def __init__(self, model: nn.Module, stage: int | str = -1, method: str = "gradcam"):
        try:
            cam_cls = CAM_METHODS[method]
        except KeyError:
            raise ValueError(f"unknown CAM method {method!r}; choose from {sorted(CAM_METHODS)}") from None
        self.model = model
        self.target_path = resolve_target_layer(model, stage)
        self._was_training = model.training
        self._tap = nn.Identity()
        self._cam = cam_cls(model=model, target_layers=[self._tap])  # puts the model in eval mode
        self._handle = model.get_submodule(self.target_path).register_forward_hook(self._route_through_tap)
        self._closed = False

    def _route_through_tap(self, module, inputs, output):
        if isinstance(output, tuple):
            return (self._tap(output[0]), *output[1:])
        return self._tap(output)

    def __call__(self, images_uint8, reference, aug_smooth: bool = False, eigen_smooth: bool = False) -> np.ndarray:
        """(B, H, W) maps in [0, 1] of the pixels raising cos(model(image_b), reference_b).

        ``reference``: (E,) shared by all images, or (B, E) one per image.
        """
        if self._closed:
            raise RuntimeError("FaceCAM is closed")
        x = as_batch(images_uint8)
        ref = torch.as_tensor(reference)
        if ref.dim() == 1:
            ref = ref.expand(x.shape[0], -1)
        if ref.dim() != 2 or ref.shape[0] != x.shape[0]:
            raise ValueError(f"reference must be (E,) or (B={x.shape[0]}, E), got {tuple(ref.shape)}")
        targets = [FaceSimilarityTarget(r) for r in ref]
        with torch.inference_mode(False), torch.enable_grad():
            # the input requires grad so the target activations do, even for a frozen model
            inp = normalize(x.to(self._cam.device)).requires_grad_(True)
            maps = self._cam(input_tensor=inp, targets=targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        return np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)

    def close(self) -> None:
        """Remove every hook and restore the model's training flag (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._cam.activations_and_grads.release()
        self._handle.remove()
        self.model.train(self._was_training)

    def __enter__(self) -> "FaceCAM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def face_gradcam(model: nn.Module, images_uint8, reference_embedding, stage: int | str = -1,
                 method: str = "gradcam", **call_kw) -> np.ndarray:
    """(B, H, W) float32 maps in [0, 1]: where ``images`` look like ``reference_embedding`` to ``model``.

    ``stage``: stage label (last block of it) or module path; ``method``: a key of :data:`CAM_METHODS`.
    """
    with FaceCAM(model, stage=stage, method=method) as cam:
        return cam(images_uint8, reference_embedding, **call_kw)


def gradcam_figure(teacher: nn.Module, students: dict, hr_images, lr_images, reference_embedding,
                   stage: int | str = -1, scale_label: str = "LR", method: str = "gradcam"):
    """The Grad-CAM mosaic: rows = HR probes, LR probes, the teacher's CAM on HR, then each student's
    CAM on LR (``students``: display name → backbone); columns = faces. The CAM target is the cosine
    with ``reference_embedding`` (e.g. the teacher's embedding of the other image of each pair)."""
    from .viz import mosaic_figure, overlay

    def cam_row(model, images):
        heat = face_gradcam(model, images, reference_embedding, stage=stage, method=method)
        return [overlay(img, h) for img, h in zip(images, heat)]

    rows = [list(hr_images), list(lr_images), cam_row(teacher, hr_images)]
    titles = ["HR probe", f"{scale_label} probe", "teacher CAM (HR)"]
    for name, student in students.items():
        rows.append(cam_row(student, lr_images))
        titles.append(f"{name} CAM (LR)")
    return mosaic_figure(rows, row_titles=titles)


__all__ = ["CAM_METHODS", "FaceSimilarityTarget", "FaceCAM", "face_gradcam", "gradcam_figure", "resolve_target_layer",
           "block_paths"]
