"""The one registration helper behind lqlib's name → object registries (backbones, teachers, KD terms)."""
from __future__ import annotations

from typing import Any, Callable, MutableMapping


def registrar(table: MutableMapping[str, Any], kind: str, name: str, obj: Any = None,
              on_register: Callable[[str, Any], None] | None = None):
    """Register ``obj`` in ``table`` under ``name``; without ``obj``, return a decorator that does.

    A name registered twice is a ``KeyError`` naming the registry ``kind``; ``on_register(name, obj)``
    runs before insertion (e.g. to stamp the name on a class).
    """
    def deco(o):
        if name in table:
            raise KeyError(f"{kind} {name!r} already registered")
        if on_register is not None:
            on_register(name, o)
        table[name] = o
        return o
    return deco(obj) if obj is not None else deco
