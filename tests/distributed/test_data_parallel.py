"""Data-parallel training under MPI (gpuback.distributed): N ranks launched with ``mpiexec``
train as one process on the same global batches, resume, fail as one job.

Each test launches ``mpiexec -n N`` (the one next to this Python: the ``mpich`` wheel of the
``mpi`` extra) on tests/helpers/distributed_worker.py or ``python -m gpuback``, with a timeout, and
compares what rank 0 wrote with a single-process run made here (``SingleProcess``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import distributed_worker as worker

from gpuback.backends import backend_status
from gpuback.distributed import mpi as distributed

MPIEXEC = Path(sys.executable).parent / "mpiexec"
IN_CI = os.environ.get("CI") == "true"
TIMEOUT = 180  # seconds any one launch may take (a hang fails the test, never the suite)

try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

# in CI (CI=true, which installs the mpi extra) a missing MPI fails the tests instead
needs_mpi = pytest.mark.skipif(
    not (HAVE_MPI4PY and MPIEXEC.exists()) and not IN_CI,
    reason=f"needs mpi4py and mpiexec beside {sys.executable} (pip install 'gpuback[mpi]')")

WORKER = Path(worker.__file__)  # run by path under mpiexec: a plain script
HERE = WORKER.parent


def _env() -> dict[str, str]:
    """This environment less any MPI launcher's variables (a test run under mpiexec
    itself must still launch its own jobs)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}


def launch(ranks: int, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``mpiexec -n ranks python ARGS``; its result (stdout and stderr as text)."""
    return subprocess.run([str(MPIEXEC), "-n", str(ranks), sys.executable, *args],
                          capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=HERE)


def run_worker(ranks: int, mode: str, out: Path, **options: object) -> None:
    result = launch(ranks, str(WORKER), mode, str(out), json.dumps(options))
    assert result.returncode == 0, result.stdout + result.stderr


def assert_close(got: np.ndarray, want: np.ndarray, key: str, rtol: float = 1e-9) -> None:
    scale = max(float(np.max(np.abs(want))), 1e-300)
    error = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
    assert error <= rtol, f"{key}: relative difference {error:.3g} > {rtol:g}"


# --- no MPI --------------------------------------------------------------------------------

def test_importing_gpuback_does_not_import_mpi4py() -> None:
    code = ("import sys, gpuback, gpuback.distributed as d; "
            "w = d.world(); print('mpi4py' in sys.modules, type(w).__name__, w.size)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "SingleProcess", "1"]


@pytest.mark.parametrize(("batch", "size"), [(10, 3), (10, 2), (7, 7), (2, 3), (1, 4),
                                             (0, 3), (1000, 7)])
def test_shares_split_a_batch_into_contiguous_parts_differing_by_a_row(batch: int,
                                                                       size: int) -> None:
    parts = [distributed.share_bounds(batch, size, r) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == batch
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    rows = [hi - lo for lo, hi in parts]
    assert max(rows) - min(rows) <= 1 and sorted(rows, reverse=True) == rows


def test_shares_of_ten_rows_over_three_ranks() -> None:
    assert [distributed.share_bounds(10, 3, r) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    world = distributed.SingleProcess()
    assert world.share(47, 40, 10) == (40, 47)  # the last, short global batch


# --- under mpiexec -------------------------------------------------------------------------

@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_ranks_train_as_one_process_on_the_same_global_batches(tmp_path: Path, ranks: int,
                                                               backend: str) -> None:
    run_worker(ranks, "train", tmp_path, backend=backend)
    got = np.load(tmp_path / "train.npz")
    assert int(got["size"]) == ranks
    assert bool(got["same_on_every_rank"])
    want = worker.train_runs(backend, comm=distributed.SingleProcess())
    start = worker.network(backend).parameters()
    for key, value in want.items():
        assert_close(got[key], value, key)
    for run in ("sgd", "adam"):  # and the runs did train
        moved = max(float(np.max(np.abs(want[f"{run}/{k}"] - v))) for k, v in start.items())
        assert moved > 1e-2, run


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize(("ranks", "backend"), [(3, "cpu"), (2, "numpy")])
def test_buckets_started_during_backward_train_as_one_process(tmp_path: Path, ranks: int,
                                                              backend: str) -> None:
    """``bucket_bytes`` 0: a non-blocking all-reduce per group, started while backward runs
    on (``gpuback.buckets``): two per group, its weights and its bias."""
    run_worker(ranks, "train", tmp_path, backend=backend, bucket_bytes=0)
    got = np.load(tmp_path / "train.npz")
    assert bool(got["same_on_every_rank"])
    want = worker.train_runs(backend, comm=distributed.SingleProcess())
    for key, value in want.items():
        assert_close(got[key], value, key)


@needs_mpi
@pytest.mark.slow
def test_a_bad_bucket_size_stops_every_rank_with_one_message(tmp_path: Path) -> None:
    result = launch(2, str(WORKER), "train", str(tmp_path),
                    json.dumps({"backend": "numpy", "runs": ["sgd"], "bucket_bytes": -1}))
    assert result.returncode != 0
    assert result.stderr.count("ValueError: bucket_bytes: expected a whole number") == 1, \
        result.stderr
    assert "[rank" not in result.stderr  # raised alike on every rank: no abort


@needs_mpi
@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.parametrize("bucket_bytes", [0, 1 << 30])
def test_the_cuda_backend_under_the_simulator_trains_as_one_process(tmp_path: Path,
                                                                     bucket_bytes: int) -> None:
    """Its buffers are device arrays, as strict as a GPU's, and the simulator has no NCCL:
    every collective goes through host copies, the buckets' copied back when waited for."""
    status = backend_status("cuda")
    if not (status.usable and status.simulated) and not IN_CI:
        pytest.skip(f"the cuda backend does not run under the simulator here: {status.reason}")
    env = {**_env(), "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(WORKER), "train",
                             str(tmp_path), json.dumps({"backend": "cuda", "runs": ["adam"],
                                                        "bucket_bytes": bucket_bytes})],
                            capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=HERE)
    assert result.returncode == 0, result.stdout + result.stderr
    got = np.load(tmp_path / "train.npz")
    assert bool(got["same_on_every_rank"])
    want = worker.train_runs("numpy", comm=distributed.SingleProcess(), runs=("adam",))
    for key, value in want.items():
        assert_close(got[key], value, key)


@needs_mpi
@pytest.mark.slow
def test_a_run_resumed_under_two_ranks_equals_an_unbroken_one(tmp_path: Path) -> None:
    run_worker(2, "resume", tmp_path, backend="numpy", step="start")
    run_worker(2, "resume", tmp_path, backend="numpy", step="finish")
    got = np.load(tmp_path / "resume.npz")
    want = worker.unbroken("numpy")
    assert int(got["epochs_trained"]) == 3
    for key, value in want.items():
        assert_close(got[key], value, key)


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "raise"])
def test_a_rank_that_dies_ends_the_job(tmp_path: Path, how: str) -> None:
    began = time.monotonic()
    result = launch(2, str(WORKER), "die", str(tmp_path), json.dumps({"how": how}),
                    timeout=60)
    assert time.monotonic() - began < 30
    assert result.returncode != 0
    if how == "raise":
        assert "[rank 1] RuntimeError: rank 1 fails on purpose" in result.stderr


@needs_mpi
@pytest.mark.slow
def test_one_ranks_bad_data_stops_every_rank_with_the_same_message(tmp_path: Path) -> None:
    run_worker(2, "bad", tmp_path)
    records = [json.loads((tmp_path / f"bad-{r}.json").read_text()) for r in range(2)]
    for case in ("nan", "rows"):
        assert records[0][case] == records[1][case] and records[0][case] is not None
        assert all(r[case + "_on_every_rank"] for r in records)
    assert records[0]["nan"].startswith("rank 1: X: expected finite values")
    assert records[0]["rows"].startswith("X shape: differs between the ranks")
    assert "rank 1 has [19, 5]" in records[0]["rows"]
    # a loss gone NaN on the rank that holds the sample: the one process's divergence, alike
    want = worker.overflow(distributed.SingleProcess())
    assert want is not None and "loss is NaN or infinite" in want
    assert records[0]["overflow"] == records[1]["overflow"] == want
    # the world, and each rank's share of the cores (2 ranks on this node)
    assert [(r["rank"], r["local_rank"], r["size"], r["ranks_per_node"]) for r in records] == \
        [(0, 0, 2, 2), (1, 1, 2, 2)]
    for r in records:  # the cpu backend's threads, and NumPy's BLAS (the numpy backend's)
        assert r["cpu_threads"] == max(1, r["affinity"] // 2)
        assert r["blas_threads"] and set(r["blas_threads"]) == {r["cpu_threads"]}


def _cli_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # one JSON document: rank 0's alone
    return json.loads(lines[0])


@needs_mpi
@pytest.mark.slow
def test_the_cli_under_two_ranks_trains_and_resumes_as_one_process(tmp_path: Path) -> None:
    train = ["-m", "gpuback", "train", "--hidden", "8", "--backend", "numpy", "--dtype",
             "float64", "--json", "--no-progress"]
    two = _cli_json(launch(2, *train, "--epochs", "2", "--out", str(tmp_path / "two")))
    one = _cli_json(subprocess.run([sys.executable, *train, "--epochs", "2", "--out",
                                    str(tmp_path / "one")], capture_output=True, text=True,
                                   timeout=TIMEOUT, env=_env()))
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=1e-12)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-9)
    written = {p.name for p in (tmp_path / "two").iterdir()}  # (the curve needs matplotlib)
    assert written - {"curve.png"} == {"history.jsonl", "model"}
    history = (tmp_path / "two" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2]
    # --resume under two ranks, to epoch 3: as one process resumed to epoch 3
    resumed = _cli_json(launch(2, "-m", "gpuback", "train", "--resume", "--epochs", "3",
                               "--json", "--out", str(tmp_path / "two")))
    alone = _cli_json(subprocess.run([sys.executable, "-m", "gpuback", "train", "--resume",
                                      "--epochs", "3", "--json", "--out",
                                      str(tmp_path / "one")],
                                     capture_output=True, text=True, timeout=TIMEOUT,
                                     env=_env()))
    assert resumed["epochs_trained"] == 3
    assert resumed["test_loss"] == pytest.approx(alone["test_loss"], rel=1e-9)
    # a failure alike on every rank is printed once, and every rank exits with its code
    again = launch(2, *train, "--epochs", "2", "--out", str(tmp_path / "two"))
    assert again.returncode == 2
    assert again.stderr.count("already holds a checkpoint") == 1, again.stderr
