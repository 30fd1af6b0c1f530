"""Test parameters per backend: marked ``sim`` or ``gpu``, skipped with the backend's reason
where it cannot run (outside CI; in CI the ``backend`` fixture fails instead)."""

from __future__ import annotations

import functools
import os

import pytest

from gpuback.backends import backend_names, backend_status, get_backend

IN_CI = os.environ.get("CI", "").lower() == "true"


@functools.cache
def state(name: str):
    """Backend ``name``'s status here (cached)."""
    return backend_status(name)


def backend_param(name: str, *values, param_id: str | None = None):
    """``pytest.param(name, *values)`` with the marks backend ``name`` needs here: ``sim`` when
    simulated, ``gpu`` on a real device, and a skip giving the reason when it cannot run
    (outside CI; in CI the ``backend`` fixture fails instead)."""
    status = state(name)
    marks = []
    if status.simulated:
        marks.append(pytest.mark.sim)
    elif status.usable and get_backend(name).device != "cpu":
        marks.append(pytest.mark.gpu)
    if not status.usable and not IN_CI:
        marks.append(pytest.mark.skip(reason=f"backend {name!r} cannot run here: "
                                             f"{status.reason}"))
    return pytest.param(name, *values, marks=marks, id=param_id or name)


def backend_cases(cases: list[tuple[str, dict]],
                  small_cases: list[tuple[str, dict]]) -> list:
    """Parameters ``(backend, case, spec)`` for ``@pytest.mark.parametrize(..., indirect=
    ["backend"])``: every case of ``cases`` on each backend that runs at full speed, and of
    ``small_cases`` on a simulated one."""
    return [backend_param(name, case, spec, param_id=f"{name}-{case}")
            for name in backend_names()
            for case, spec in (small_cases if state(name).simulated else cases)]
