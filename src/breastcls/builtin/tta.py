"""Built-in test-time augmentations: the symmetries of a square image (the dihedral group D4).

Tissue has no up, down, left or right, so the eight rotations and reflections of a square
micrograph are equally valid views of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from breastcls.interfaces import TTA
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry

__all__ = ["D8_ELEMENTS", "FLIPS_ELEMENTS", "DihedralTTA", "apply_dihedral"]

D8_ELEMENTS: tuple[tuple[int, bool], ...] = tuple(
    (quarter_turns, flip) for flip in (False, True) for quarter_turns in range(4)
)
"""The eight elements of D4 as ``(quarter turns, then mirror left-right)``, identity first."""

FLIPS_ELEMENTS: tuple[tuple[int, bool], ...] = ((0, False), (0, True), (2, True), (2, False))
"""Identity, left-right mirror, top-bottom mirror (half turn then mirror) and half turn."""


def apply_dihedral(images: Any, quarter_turns: int, flip: bool) -> Any:
    """Rotate a ``(batch, h, w, c)`` tensor by ``quarter_turns`` x 90° (counter-clockwise), then
    mirror it left-right when ``flip``. Square images keep their shape."""
    import tensorflow as tf

    out = tf.image.rot90(images, k=quarter_turns) if quarter_turns % 4 else images
    return tf.reverse(out, axis=[2]) if flip else out


@dataclass(frozen=True, slots=True, kw_only=True)
class DihedralTTA:
    """A :class:`~breastcls.interfaces.TTA` made of elements of the dihedral group of the square.

    Attributes:
        elements: ``(quarter turns, mirror)`` pairs, see :data:`D8_ELEMENTS`.
    """

    elements: tuple[tuple[int, bool], ...]

    @property
    def size(self) -> int:
        """The number of copies."""
        return len(self.elements)

    def __call__(self, images: Any) -> Any:
        """Return the ``(size, batch, h, w, c)`` stack of transformed copies."""
        import tensorflow as tf

        return tf.stack([apply_dihedral(images, k, flip) for k, flip in self.elements], axis=0)


@hookimpl
def breastcls_register_tta(registry: PluginRegistry[TTA]) -> None:
    """Register ``none``, ``flips`` (4 copies) and ``d8`` (8 copies)."""
    registry.add("none", DihedralTTA(elements=((0, False),)), summary="no test-time augmentation")
    registry.add(
        "flips",
        DihedralTTA(elements=FLIPS_ELEMENTS),
        summary="4 copies: identity, horizontal and vertical mirrors, half turn",
    )
    registry.add(
        "d8",
        DihedralTTA(elements=D8_ELEMENTS),
        summary="8 copies: every rotation and reflection of the square (dihedral group D4)",
    )
