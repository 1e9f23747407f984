"""Root pytest configuration: adapters of absent libraries are not collected for doctests."""

import importlib.util

_ADAPTER_LIBRARIES = {
    "_torch.py": "torch",
    "_torch_cpu.py": "torch",
    "_jax.py": "jax",
    "_cupy.py": "cupy",
    "_cuda.py": "cupy",
    "_dask.py": "dask",
}

collect_ignore = [
    f"relaxcat/_backends/{module}"
    for module, library in _ADAPTER_LIBRARIES.items()
    if importlib.util.find_spec(library) is None
]
collect_ignore += ["noxfile.py", "benchmarks", "examples", "docs"]
