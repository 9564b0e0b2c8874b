"""What a tracker or an analytics stage knows between two frames, kept across a restart.

A class names the attributes that change as frames go by in ``STATE`` (the tracks, the open
dwell sessions, the side of each person for each line...); settings and models stay out.
:meth:`Stateful.snapshot` reads them and :meth:`Stateful.restore` puts them back, so a
resumed recording goes on exactly where the checkpoint left it: the same track ids, the
same open sessions, the same counts.

The snapshot is stored with :func:`dumps` (pickle) and read with :func:`loads`, which only
rebuilds the types such a state is made of (Lookout's own classes, numpy arrays, dates,
standard containers): a file tampered with cannot make it run other code.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, ClassVar

# What a state may be rebuilt from: classes of these modules, the few builtins it needs,
# and the functions numpy and zoneinfo pickle their objects with.  No other function.
_CLASS_MODULES = ("libs.", "numpy", "datetime", "collections", "zoneinfo")
_ALLOWED_BUILTINS = frozenset({
    "set", "frozenset", "list", "dict", "tuple", "int", "float", "complex", "bool", "str",
    "bytes", "bytearray", "slice", "range",
})
_ALLOWED_FUNCTIONS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("zoneinfo", "ZoneInfo._unpickle"),
})


class Stateful:
    """A tracker or stage whose per-frame state survives a restart (see the module)."""

    STATE: ClassVar[tuple[str, ...]] = ()

    def snapshot(self) -> dict[str, Any]:
        """The attributes named in ``STATE``, by name (live objects: :func:`dumps` them
        before the next frame changes them)."""
        return {name: getattr(self, name) for name in self.STATE}

    def restore(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`snapshot` returned."""
        unknown = set(state) - set(self.STATE)
        missing = set(self.STATE) - set(state)
        if unknown or missing:
            raise ValueError(f"{type(self).__name__}: state does not fit "
                             f"(unknown {sorted(unknown)}, missing {sorted(missing)})")
        for name, value in state.items():
            setattr(self, name, value)


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins":
            if name in _ALLOWED_BUILTINS:
                return super().find_class(module, name)
        elif (module, name) in _ALLOWED_FUNCTIONS:
            return super().find_class(module, name)
        elif module.startswith(_CLASS_MODULES) and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"a state holds no {module}.{name}")


def dumps(state: Any) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    """:func:`dumps`'s output back; ``pickle.UnpicklingError`` for anything but a state."""
    return _StateUnpickler(io.BytesIO(data)).load()
