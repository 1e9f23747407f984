"""Root pytest configuration: modules of absent libraries are not collected for doctests."""

import importlib.util
from pathlib import Path

#: Modules (by file name) that import a framework at the top, and the framework each needs.
_ADAPTER_LIBRARIES = {
    "_torch.py": "torch",
    "_torch_cpu.py": "torch",
    "_jax.py": "jax",
    "_cupy.py": "cupy",
    "_cuda.py": "cupy",
    "_dask.py": "dask",
    "torch.py": "torch",  # relaxcat.torch: torch.distributions classes
    "numpyro.py": "numpyro",  # relaxcat.numpyro: numpyro.distributions classes
}

_ROOT = Path(__file__).parent
collect_ignore = [
    str(path.relative_to(_ROOT))
    for path in sorted((_ROOT / "relaxcat").rglob("*.py"))
    if path.name in _ADAPTER_LIBRARIES
    and importlib.util.find_spec(_ADAPTER_LIBRARIES[path.name]) is None
]
collect_ignore += ["noxfile.py", "benchmarks", "examples", "docs"]
