"""What the tests share: random specs and data, tolerances, the op cases every backend is held
to, an independent implementation, networks near relu's kink, backend parameters, checkout
copies, checkpoint files, and the worker that ``mpiexec`` runs.

Imported as ``helpers.<module>`` (pyproject.toml puts tests/ on pytest's path).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # the repository's root
