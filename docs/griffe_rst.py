"""A griffe extension for the API reference (mkdocs.yml, mkdocstrings ``extensions``): lqlib's docstrings use
Sphinx cross-reference roles (``:func:`lqlib.x```, ``:class:`~lqlib.y```), which Markdown would show as raw
text; each becomes inline code of its target (``~`` keeps the last component, as Sphinx shows it)."""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`(~?)([^`<]+?)`")


def plain_roles(text: str) -> str:
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
