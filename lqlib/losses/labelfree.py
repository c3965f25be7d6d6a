"""Label-free knowledge distillation with face-content replacement (Cheng & Deng 2022).

The student learns only from the teacher's embeddings, so unlabelled faces can be used:

    L_LF = mean_batch ( 1 − cos( e_T(x), h(e_S(x')) ) )

where x is the high-resolution face the teacher sees and x' the student's input: the same face,
degraded by the training loop (the loop already feeds the teacher the HR batch and the student its
degraded copy). h is a learnable linear connector (no bias) when the embedding sizes differ,
identity otherwise; it is trained with the student (include ``composer.parameters()`` in the
optimiser). Values lie in [0, 2]: 0 for identical directions, 2 for opposite ones.

The term needs no labels and contains no CE (``needs_labels=False``, ``includes_ce=False``), so a
composer made of label-free terms only uses no cross-entropy at all (``LossComposer.uses_ce`` is
False) and the margin head is not trained. Combined with a labelled term ("labelfree+logit") the
composer needs labels again and adds the CE.

Face-content replacement (``lqlib.augment.face_content_replacement``) is the paper's data
augmentation: aligned facial regions (eyes, nose, mouth) are swapped between faces of the batch so
that the student sees new identities; it must be applied to the HR batch *before* it is split into
the teacher's input and the degraded student input, so the teacher's target is computed on the
replaced image itself (see ``lqlib/augment.py``).
"""
from __future__ import annotations

from .angular import embedding_angle_loss, embedding_connector
from .base import EMBEDDING_SIZES, KDTerm, ModelOutputs, Progress, register_kd


@register_kd("labelfree")
class LabelFreeKD(KDTerm):
    """1 − cos(teacher embedding, student embedding), batch-mean; no labels, no CE."""

    needs = frozenset({"embedding"})
    includes_ce = False
    needs_labels = False
    matches_embedding = True

    def __init__(self, student_embedding: int | None = None, teacher_embedding: int | None = None):
        super().__init__()
        self.embed_connector = embedding_connector(student_embedding, teacher_embedding)

    reads = EMBEDDING_SIZES

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, labels, progress: Progress):
        return embedding_angle_loss(self.embed_connector, student.embedding, teacher.embedding)
