"""Make a source checkout importable in place (imported first by ``gpuback/__init__``).

The device code lives in ``kernels/`` at the top of the repository and becomes
``gpuback.kernels`` when the package is installed. Run from a checkout (scripts in its root,
``python -m pytest``, a mutation tester's copy of the tree), ``gpuback`` is the source
directory and has no ``kernels`` inside: the top-level ``kernels/`` is registered under that
name, so both layouts import the very same modules.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def alias_checkout_kernels() -> None:
    """Register ``<checkout>/kernels`` as ``gpuback.kernels`` when gpuback runs uninstalled."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "kernels" / "__init__.py"
    if (here / "kernels").is_dir() or "gpuback.kernels" in sys.modules \
            or not checkout.is_file():
        return
    spec = importlib.util.spec_from_file_location(
        "gpuback.kernels", checkout, submodule_search_locations=[str(checkout.parent)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpuback.kernels"] = module
    spec.loader.exec_module(module)
    # as an import of the subpackage would: gpuback.kernels.<name> works after
    # ``import gpuback.kernels``
    vars(sys.modules[__package__])["kernels"] = module


alias_checkout_kernels()
