"""The set-up seam of :class:`lqlib.train.Trainer`: the training data (decoded once, fingerprinted), the backbone and
margin head, the teacher (live or its cached outputs), the KD terms, the :class:`~lqlib.distiller.Distiller`, the
optimiser and its schedule — everything from the run's plan (:mod:`lqlib.training_plan`), nothing resolved again.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .callbacks import DegenerateTrainingError
from .data.memory import DecodedDataset, dataset_fingerprint, decoded
from .data.sampling import EpochSampler, build_dataset, data_key
from .data.sources import leaks
from .distiller import Distiller
from .engine import CompileProbe, compiled, compiled_modules
from .heads import build_head
from .methods import build_composer
from .models import build_backbone
from .runtime import compile_enabled
from .schedules import lr_factor
from .teacher_loading import load_teacher, teacher_cache_for


def sgd(params, **kw) -> torch.optim.SGD:
    """SGD with the fused kernel (one pass over all parameters: ~3.5× faster than the per-tensor loop
    on the CPU, identical updates), the plain loop where this build has no fused SGD for the device."""
    try:
        return torch.optim.SGD(params, fused=True, **kw)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.SGD(params, **kw)


class TrainerBuild:
    """:meth:`_build`: the models, data and optimiser of a :class:`~lqlib.train.Trainer` (its ``plan``, ``cfg``,
    ``device`` and process-group attributes set)."""

    def _build(self):
        torch.manual_seed(self.cfg.seed)
        self._build_data()
        self._build_models()
        self._build_optimiser()

    def _build_data(self):
        """The training set (decoded once), its split, class count and content fingerprint."""
        cfg = self.cfg
        per_class = dict(min_per_class=cfg.min_images_per_class, max_per_class=cfg.max_images_per_class)
        self.data_key = data_key(cfg.data, cfg.data_dir, cfg.max_images, **per_class)
        dataset, self.num_classes, self.split = build_dataset(
            cfg.data, cfg.data_dir, max_images=cfg.max_images, synthetic=cfg.synthetic, seed=cfg.seed, **per_class)
        self.dataset = decoded(dataset, self.data_key)  # decode once
        # the training faces by content (8 bytes each): evaluations refuse pair sets that hold any of them
        # (cached per data key; synthetic sets, cheap to hash, never: their pixels depend on more than the key)
        fp_key = None if cfg.data == "synthetic" else self.data_key
        self.fingerprint = dataset_fingerprint(self.dataset, fp_key) if self.is_main else None
        if self.device.type == "cuda" and isinstance(self.dataset, DecodedDataset):
            self.dataset = self.dataset.to(self.device)  # the uint8 pack lives on the GPU
        if cfg.val_pairs:
            if leaks(self.split, cfg.val_pairs):
                raise ValueError(f"val_pairs={cfg.val_pairs!r} holds identities of the training split "
                                 f"{self.split!r}; validate on that split's own held-out pairs (data=lfw-half-val "
                                 "with val_pairs=lfw-half-val)")
        if self.num_classes < 2:
            raise DegenerateTrainingError(f"the training set {cfg.data!r} (max_images={cfg.max_images}) has "
                                          f"{self.num_classes} class(es): a classifier needs at least 2")

    def _build_models(self):
        """Backbone, margin head, teacher (live or its cached outputs), KD terms: the :class:`Distiller`."""
        cfg = self.cfg
        s = self.settings = self.plan.settings  # explicit config field > method > recipe, per setting
        self.backbone_name, self.backbone_kw, self.head_name = s.backbone, s.backbone_kw, s.head
        backbone = build_backbone(self.backbone_name, **self.backbone_kw)
        head = build_head(self.head_name, backbone.embedding_size, self.num_classes, **cfg.head_kw)
        teacher = teacher_head = None
        if self._teacher_arg is not None:
            teacher, teacher_head = load_teacher(self._teacher_arg, self.device)
        if cfg.init_head_from_teacher:
            self._copy_teacher_head(head, teacher_head)
        composer = build_composer(self.method, backbone, teacher, self.plan.kd_weights, self.plan.kd_params)
        if composer.needs_teacher and teacher is None:
            raise ValueError(f"method {cfg.method!r} needs a teacher: set teacher= (a teacher run directory "
                             "or an external teacher)")
        fcr = s.face_content_replacement
        use_compile = compile_enabled(cfg.compile)
        cache = None
        if teacher is not None:
            cache = teacher_cache_for(cfg.teacher_cache, self._teacher_arg, teacher, composer, self.dataset,
                                      self.data_key, self.device, str(self.amp_dtype), log=print if self.is_main else None,
                                      center=s.teacher_center, teacher_head=teacher_head,
                                      face_content_replacement=fcr, amp_dtype=self.amp_dtype)
        self.distiller = Distiller(
            compiled(backbone, use_compile), head, composer, teacher_cache=cache,
            teacher=compiled(teacher, use_compile and cache is None) if teacher is not None else None,
            teacher_head=teacher_head, role=cfg.role, scales=cfg.scales,
            degradation=s.degradation, hflip=cfg.hflip, face_content_replacement=fcr,
            channels_last=self.channels_last).to(self.device)
        if self.channels_last:
            self.distiller.to(memory_format=torch.channels_last)

    def _build_optimiser(self):
        """SGD over the trainable parameters, DDP, the epoch sampler and the learning-rate schedule."""
        cfg = self.cfg
        params = [p for p in self.distiller.parameters() if p.requires_grad]
        self.optimizer = sgd(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                             weight_decay=cfg.weight_decay)
        self.model = self.distiller
        if self.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.distiller, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.probe = CompileProbe(compiled_modules(self.distiller))
        self.sampler = EpochSampler(len(self.dataset), cfg.seed, self.rank, self.world)
        self.steps_per_epoch = len(self.dataset) // self.world // cfg.batch_size
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set ({len(self.dataset)} images)")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(cfg.schedule, s / self.steps_per_epoch, epochs=cfg.epochs,
                                                step_epochs=cfg.lr_step_epochs, gamma=cfg.lr_gamma,
                                                warmup_epochs=cfg.warmup_epochs) * self.record.lr_scale())

    def _copy_teacher_head(self, head: nn.Module, teacher_head: Optional[nn.Module]):
        if teacher_head is None:
            raise ValueError("init_head_from_teacher=True needs a teacher run with a margin head "
                             f"(teacher={self.cfg.teacher!r})")
        if teacher_head.weight.shape != head.weight.shape:
            raise ValueError(f"cannot initialise the student head from the teacher: teacher head "
                             f"{tuple(teacher_head.weight.shape)} vs student {tuple(head.weight.shape)} "
                             "(train both on the same identities, or set init_head_from_teacher=False)")
        head.weight.data.copy_(teacher_head.weight.data)
