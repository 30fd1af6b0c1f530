"""``python -m gpuback``: the same as the ``gpuback`` command."""

from .cli import main

raise SystemExit(main())
