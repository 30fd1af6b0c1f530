"""gpuback.torch's OpenMP spin setting: made before PyTorch loads OpenMP, never over the
user's own, and not at all once PyTorch is loaded (it could no longer take effect)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="gpuback.torch needs PyTorch (pip install 'gpuback[torch]')")

SHOW = ("import os; {first}; "
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")


def spin_after(first: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", SHOW.format(first=first)], check=True,
                            capture_output=True, text=True, env={**clean, **env})
    return result.stdout.strip()


def test_imported_first_it_shortens_the_spin() -> None:
    from gpuback.torch import SPIN_SETTING

    assert spin_after("import gpuback.torch") == f"{SPIN_SETTING[1]} None"


@pytest.mark.parametrize(("env", "expected"), [({"GOMP_SPINCOUNT": "7"}, "7 None"),
                                               ({"OMP_WAIT_POLICY": "ACTIVE"}, "None ACTIVE")])
def test_the_users_setting_stands(env, expected) -> None:
    assert spin_after("import gpuback.torch", **env) == expected


def test_after_pytorch_it_changes_nothing() -> None:
    assert spin_after("import torch; import gpuback.torch") == "None None"
