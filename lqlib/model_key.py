"""The model key: which model a row of a study is, as one typed value.

Every model of a study has a key; its text form names run folders, cache files and the ``model_key``
column of results::

    teacher                                   the study's own HR teacher (BasicNet-HR)
    teacher:<label>                           an external teacher's own row (e.g. ``teacher:faceapi-resnet``)
    <method>[<overrides>]^<head>@<teacher>~headinit
                                              a student: its KD method (``logit``, ``logit+attention``), KD
                                              weights/parameters other than the method's own
                                              (``[angular=50,logit.T=2]``), a margin head other than the
                                              method's own (ArcFace, or e.g. ECACFace's) (``^adaface``), an
                                              external teacher (``@faceapi-resnet``) and ``~headinit`` when its
                                              head was copied from the teacher (each part only when present)

:meth:`ModelKey.parse` is the one place the text is taken apart; :meth:`ModelKey.student` builds a
student's key from its settings, ``str(key)`` formats it. A key knows its table name
(:attr:`~ModelKey.display_name`), its file name (:attr:`~ModelKey.file_name`) and its place in tables
and figures (:meth:`~ModelKey.sort_key`: BasicNet-HR, the own teacher's students in the method
registry's order — BasicNet-LR first, a combination after its parts —, then each external teacher
followed by its students). A key compares equal to its text, so ``key == "teacher"`` reads naturally.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from .heads import HEAD_NAMES
from .methods import METHODS, get_method, matches_teacher_embedding
from .paths import slug
from .teachers import teacher_label

OWN_TEACHER = "teacher"
EXTERNAL_TEACHER = "teacher:"
HEAD_INIT = "~headinit"
HEAD_MARK = "^"
DEFAULT_HEAD = "arcface"
DISPLAY = {"none": "BasicNet-LR", "logit": "+logit KD", "attention": "+attention KD",
           "logit+attention": "+logit+attention KD"}
OWN_TEACHER_NAME = "BasicNet-HR"
_STUDENT = re.compile(r"^(?P<method>[A-Za-z0-9_+]+)(?:\[(?P<overrides>[^\[\]@~^]*)\])?(?:\^(?P<head>[A-Za-z0-9_]+))?"
                      r"(?:@(?P<teacher>[^@~\[\]^]+))?(?P<headinit>~headinit)?$")


@dataclass(frozen=True, eq=False)
class ModelKey:
    """One model of a study. ``method`` is empty for a teacher's own row; ``teacher`` is the external
    teacher's label ("" for the study's own HR teacher and its students)."""

    method: str = ""                 # registry method or an "a+b" combination; "" for a teacher row
    overrides: str = ""              # "angular=50,logit.T=2": KD weights/params other than the method's own
    head: str = ""                   # margin head other than the default that the method does not choose
    teacher: str = ""                # external teacher label
    head_from_teacher: bool = False  # the head-initialisation ablation
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.is_teacher:
            text = f"{EXTERNAL_TEACHER}{self.teacher}" if self.teacher else OWN_TEACHER
        else:
            text = self.method + (f"[{self.overrides}]" if self.overrides else "")
            text += f"{HEAD_MARK}{self.head}" if self.head else ""
            text += f"@{self.teacher}" if self.teacher else ""
            text += HEAD_INIT if self.head_from_teacher else ""
        object.__setattr__(self, "text", text)

    # ------------------------------------------------------------------ building and reading
    @classmethod
    def parse(cls, text: "str | ModelKey") -> "ModelKey":
        """The key a text names (the inverse of ``str``); a ``ValueError`` naming the text otherwise."""
        if isinstance(text, ModelKey):
            return text
        text = str(text)
        if text == OWN_TEACHER:
            return cls()
        if text.startswith(EXTERNAL_TEACHER) and len(text) > len(EXTERNAL_TEACHER):
            return cls(teacher=text[len(EXTERNAL_TEACHER):])
        m = _STUDENT.match(text)
        if m is None:
            raise ValueError(f"not a model key: {text!r} (expected 'teacher', 'teacher:<label>' or "
                             "'<method>[overrides]^<head>@<teacher>~headinit')")
        return cls(m["method"], m["overrides"] or "", m["head"] or "", m["teacher"] or "", bool(m["headinit"]))

    @classmethod
    def student(cls, method: str, teacher: str = "", head_from_teacher: bool = False,
                kd_weights: Optional[dict] = None, kd_params: Optional[dict] = None, head: str = "") -> "ModelKey":
        """A student's key from its settings: only the KD weights/parameters that differ from the method's
        own go into the key (so a weight sweep never shares a run folder with the default), only a head other than
        the method's own (an explicit head wins: :func:`lqlib.config.resolve`); ``teacher`` is an external teacher (a name, ``.onnx`` or spec)."""
        m = get_method(method)
        over = [f"{t}={float(w):g}" for t, w in sorted((kd_weights or {}).items()) if float(w) != m.kd.get(t)]
        over += [f"{t}.{k}={v:g}" if isinstance(v, (int, float)) else f"{t}.{k}={v}"
                 for t, kw in sorted((kd_params or {}).items()) for k, v in sorted(kw.items())
                 if m.params.get(t, {}).get(k) != v]
        head = head if head and head != (m.head or DEFAULT_HEAD) else ""  # an explicit head beats the method's
        return cls(method, ",".join(over), head, teacher_label(teacher) if teacher else "", bool(head_from_teacher))

    @classmethod
    def external_teacher(cls, spec: str) -> "ModelKey":
        """The own row of an external teacher (a registered name, ``.onnx`` or spec ``.json``)."""
        return cls(teacher=teacher_label(spec))

    # ------------------------------------------------------------------ what a key says
    @property
    def is_teacher(self) -> bool:
        """A teacher's own row (the study's HR teacher or an external one), not a student."""
        return not self.method

    @property
    def in_teacher_space(self) -> bool:
        """A student of the study's own teacher trained to match that teacher's embedding
        (:func:`lqlib.methods.matches_teacher_embedding`): only then is cos(teacher, student) a meaningful number."""
        return not self.is_teacher and not self.teacher and matches_teacher_embedding(self.method)

    @property
    def parts(self) -> list[str]:
        """The registry methods the student combines (``logit+attention`` → ``["logit", "attention"]``)."""
        return self.method.split("+") if self.method else []

    @property
    def display_name(self) -> str:
        """Table name: BasicNet-HR for the own teacher, BasicNet-LR for a student without KD, "+logit KD"
        etc. for the paper's terms, the method (with its overrides) otherwise; "← <teacher>" for an
        external teacher's student; the head when it is not ArcFace and a copied head are said so."""
        if self.is_teacher:
            return f"{EXTERNAL_TEACHER}{self.teacher}" if self.teacher else OWN_TEACHER_NAME
        method = self.method + (f"[{self.overrides}]" if self.overrides else "")
        name = DISPLAY.get(method, method)
        name += f" ({HEAD_NAMES.get(self.head, self.head)} head)" if self.head else ""
        name += f" ← {self.teacher}" if self.teacher else ""
        return name + (" (head from teacher)" if self.head_from_teacher else "")

    @property
    def file_name(self) -> str:
        """The key as a file-name-safe stem (run folders, cache files)."""
        return slug(self.text)

    def sort_key(self) -> tuple:
        """Reading order of tables and figures (see the module docstring)."""
        if self.is_teacher:
            return (0,) if not self.teacher else (1, self.teacher, 0)
        pos = [list(METHODS).index(p) if p in METHODS else len(METHODS) for p in self.parts]
        return (1, self.teacher, 1, max(pos), len(pos), self.text)

    def columns(self) -> dict:
        """The key's columns in a results table: ``model_key`` (its text), ``method`` ("" for a teacher
        row) and ``teacher`` (the external teacher, "" for the study's own)."""
        return {"model_key": self.text, "method": self.method, "teacher": self.teacher}

    # ------------------------------------------------------------------ a key is its text
    def __str__(self) -> str:
        return self.text

    def __eq__(self, other) -> bool:
        if isinstance(other, (ModelKey, str)):
            return self.text == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.text)

    def __lt__(self, other: "ModelKey | str") -> bool:
        return self.sort_key() < ModelKey.parse(other).sort_key()


def reading_order(key: "ModelKey | str") -> tuple:
    """``sorted(keys, key=reading_order)`` for keys or their texts."""
    return ModelKey.parse(key).sort_key()


__all__ = ["ModelKey", "reading_order", "OWN_TEACHER", "EXTERNAL_TEACHER", "HEAD_INIT", "HEAD_MARK"]
