"""A griffe extension for the API reference: Sphinx roles in docstrings become cross-references.

The docstrings name other objects the way ``help()`` and editors read them, as Sphinx roles
(``:func:`~breastcls.train.train```, ``:class:`Prediction```). mkdocstrings renders Markdown,
where those would show as raw text; this extension rewrites each role, only for the docs, into
an optional autorefs cross-reference: a link where the object is in the reference, its name in
code type where it is not (no warning, so ``mkdocs build --strict`` still passes).
Configured in ``mkdocs.yml`` (``extensions`` of the python handler).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

# :func:`name`, :class:`~pkg.mod.Name`, :py:meth:`Class.method`...; an explicit title
# (`title <target>`) is kept as the link's text.
ROLE = re.compile(
    r":(?:py:)?(?P<role>func|class|mod|meth|attr|data|exc|obj|const|type):"
    r"`(?P<tilde>~?)(?P<body>[^`]+)`"
)
_TITLED = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^>]+)>$")


def _identifier(target: str, obj: griffe.Object) -> tuple[str, str]:
    """The full path a role names, and a second guess: a bare name is looked up beside the
    object the docstring belongs to (its class for a member, else its module)."""
    target = target.strip().lstrip(".").removesuffix("()")
    if target.startswith("breastcls"):
        return target, target
    owner = obj if obj.is_class or obj.is_module else obj.parent
    module = obj if obj.is_module else obj.module
    nearest = f"{owner.path}.{target}" if owner is not None else f"{module.path}.{target}"
    # A name the module imports (`Calibration.fitted_on`) is found where it is defined.
    head, _, rest = target.partition(".")
    member = module.members.get(head)
    if member is None:
        return nearest, f"{module.path}.{target}"
    base = member.target_path if member.is_alias else member.path
    return nearest, f"{base}.{rest}" if rest else base


def rewrite(text: str, obj: griffe.Object) -> str:
    """``text`` with every Sphinx role replaced by an optional autorefs reference."""

    def replace(match: re.Match[str]) -> str:
        body = match["body"]
        titled = _TITLED.match(body)
        target = titled["target"] if titled else body
        identifier, fallback = _identifier(target, obj)
        if titled:
            title = titled["title"]
        elif match["tilde"]:
            title = target.strip().split(".")[-1]
        else:
            title = target.strip()
        slug = f' slug="{html.escape(fallback)}"' if fallback != identifier else ""
        return (
            f'<autoref optional identifier="{html.escape(identifier)}"{slug}>'
            f"<code>{html.escape(title)}</code></autoref>"
        )

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value, obj)
