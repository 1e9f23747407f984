"""Find the adapter for an array without importing any framework.

Contract of this layer:

* An adapter module is imported only when an array of its library is first seen, so
  ``import relaxcat`` and a NumPy call import no other framework, and a broken install of a
  library you do not use cannot break relaxcat.
* Detection looks at the *type* of the array (the package that defines it), never at
  values; the answer is cached per type. One library has one adapter: array types of the
  same namespace (a subclass, say) get the same adapter object, so adapters compare by
  identity.
* Each backend's peculiarities live in its adapter module and nowhere else; the
  mathematics lives in ``relaxcat/_core.py`` and is written once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from ._base import Array, Backend, NoiseSource, library_of

__all__ = ["Array", "Backend", "NoiseSource", "backend_of", "library_of"]

#: packages that define array types and have an adapter module ``_<package>.py``, in the
#: order array-api-compat's ``is_<package>_array`` checks are tried for subclasses
_ADAPTERS = ("numpy", "torch", "jax", "cupy", "dask")

_by_type: dict[type, Backend] = {}
_by_library: dict[str, Backend] = {}
#: generic adapters of array-API libraries without an adapter module, by namespace
_by_namespace: dict[ModuleType, Backend] = {}


def _adapter_class(library: str) -> Callable[[], Backend]:
    """Import the adapter of ``library`` with plain import statements.

    Not ``importlib.import_module``: TorchDynamo cannot trace it but does run import
    statements, so the first relaxcat call of a process may sit inside ``torch.compile``.
    """
    if library == "numpy":
        from ._numpy import NumpyBackend

        return NumpyBackend
    if library == "torch":
        from ._torch import TorchBackend

        return TorchBackend
    if library == "jax":
        from ._jax import JaxBackend

        return JaxBackend
    if library == "dask":
        from ._dask import DaskBackend

        return DaskBackend
    if library == "cupy":
        from ._cupy import CupyBackend

        return CupyBackend
    raise LookupError(f"relaxcat has no adapter module for the library {library!r}.")


def _load(library: str) -> Backend:
    if library not in _by_library:
        _by_library[library] = _adapter_class(library)()
    return _by_library[library]


def _identify(tp: type, x: Any, argname: str) -> Backend:
    library = library_of(x)
    if library in _ADAPTERS:
        return _load(library)
    # Subclasses defined elsewhere (a torch.Tensor subclass in a user package, say):
    # ask array-api-compat, whose checks only look at libraries already imported.
    import array_api_compat as aac

    for name in _ADAPTERS:
        if getattr(aac, f"is_{name}_array")(x):
            return _load(name)
    try:
        xp = aac.array_namespace(x)
    except TypeError:
        raise TypeError(
            f"{argname} must be an array (NumPy, PyTorch, JAX, CuPy or any array-API array); "
            f"got {tp.__module__}.{tp.__qualname__}. Convert it first, e.g. "
            f"numpy.asarray({argname}).",
        ) from None
    # By namespace, not by type: a subclass of the library's array type must get the same
    # adapter, or tau and noise of that subclass would count as another library's arrays.
    backend = _by_namespace.get(xp)
    if backend is None:
        backend = Backend(xp)
        backend.name = getattr(xp, "__name__", library)
        backend = _by_namespace.setdefault(xp, backend)  # one adapter even if threads race
    return backend


def backend_of(x: Any, argname: str = "logits") -> Backend:
    """The adapter for ``x``'s library (cached per array type)."""
    tp = type(x)
    try:
        return _by_type[tp]
    except KeyError:
        backend = _identify(tp, x, argname)
        _by_type[tp] = backend
        return backend
