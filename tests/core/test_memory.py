"""What a network needs in memory (``gpuback.memory``): figures in human units, the
network's figure equal to what it allocates, a network larger than the free memory refused
before any allocation, each backend's free memory (the host's from meminfo, cgroups and
rlimits), and initial weights drawn without a float64 copy of the whole network."""

from __future__ import annotations

import itertools
import re
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers.small_networks import Allocations, stub_free

import gpuback
from gpuback import memory
from gpuback.backends import backend_module, get_backend, host_memory
from gpuback.core import init

UNITS = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}


def _parse(figure: str) -> float:
    value, unit = figure.split()
    return float(value) * UNITS[unit]


def _figure(message: str, what: str) -> float:
    """The bytes a message gives for ``what`` ("parameters 7.28 TiB" -> 8.0e12)."""
    found = re.search(rf"{re.escape(what)} ([\d.]+ (?:B|KiB|MiB|GiB|TiB))", message)
    assert found, f"{what!r} not in {message!r}"
    return _parse(found.group(1))


def test_human_units() -> None:
    assert [memory.human(n) for n in (0, 1023, 1024, 1536, 10 * 2 ** 20, 7.28 * 2 ** 40)] == \
        ["0 B", "1023 B", "1.00 KiB", "1.50 KiB", "10.0 MiB", "7.28 TiB"]
    assert memory.human(512 * 2 ** 30) == "512 GiB"


def _mlp_parameter_count(sizes: list[int]) -> int:
    """Independent count: a dense MLP has n_in * n_out weights and n_out biases per layer."""
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_network_larger_than_the_free_memory_is_refused_before_any_allocation(
        backend: str, monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    sizes = [30, 20, 5]
    count = _mlp_parameter_count(sizes)  # 725
    itemsize = np.dtype(dtype).itemsize
    stub_free(monkeypatch, backend, 10_000)
    allocations = Allocations(monkeypatch, backend)
    with pytest.raises(memory.InsufficientMemoryError) as info:
        gpuback.Network(gpuback.mlp_spec(sizes), backend=backend, dtype=dtype)
    assert allocations.nbytes == []  # refused before any buffer was allocated
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message and f"{count:,} {dtype} parameters need" in message
    assert f"only {memory.human(10_000)} is free there" in message
    # the parameter figure is the independent count (plus at most ALIGN-element padding per
    # parameter array: 4 arrays), and the gradients take as much again
    params = _figure(message, "parameters")
    assert count * itemsize <= params * 1.005 and params <= (count + 4 * 64) * itemsize * 1.005
    assert _figure(message, "gradients") == params


def test_the_network_figure_is_what_the_network_allocates(backend: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spec = gpuback.mlp_spec([30, 20, 5])
    allocations = Allocations(monkeypatch, backend)
    net = gpuback.Network(spec, backend=backend, dtype="float32")
    needs = {n.what: n.nbytes for n in memory.network_needs(net.plan, net.layout, "float32")}
    assert sorted(allocations.nbytes) == [needs["parameters"], needs["gradients"]]
    assert needs["initial-weight staging"] == (600 + 100) * (8 + 4)  # float64 chunk + cast
    # the boundary: exactly the need is enough, a byte less is not
    total = sum(needs.values())
    stub_free(monkeypatch, backend, total)
    gpuback.Network(spec, backend=backend, dtype="float32")
    stub_free(monkeypatch, backend, total - 1)
    with pytest.raises(memory.InsufficientMemoryError):
        gpuback.Network(spec, backend=backend, dtype="float32")


def test_a_million_by_million_block_is_refused_with_its_tib_figure(backend: str) -> None:
    # 10^12 weights: 3.64 TiB each for parameters and gradients in float32. Before, the
    # initial weights alone were drawn as a 7.28 TiB float64 array: a raw MemoryError.
    spec = gpuback.mlp_spec([1_000_000, 1_000_000], loss="sum_of_squares")
    with pytest.raises(memory.InsufficientMemoryError) as info:
        gpuback.Network(spec, backend=backend, dtype="float32")
    message = str(info.value)
    assert "\n" not in message
    assert f"{_mlp_parameter_count([1_000_000, 1_000_000]):,} float32 parameters need " \
           "7.28 TiB" in message
    assert "parameters 3.64 TiB, gradients 3.64 TiB" in message
    assert f"on the {backend} backend" in message


def test_the_cli_refuses_a_network_too_large_in_one_line(tmp_path: Path, capsys) -> None:
    from gpuback.cli.app import main

    code = main(["train", "--hidden", "1000000", "1000000", "--epochs", "1", "--backend",
                 "numpy", "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and "TiB" in err and "is free there" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_free_memory_op_answers_on_every_backend(backend: str) -> None:
    free = get_backend(backend).free_memory()
    assert isinstance(free, int) and free > 0
    if get_backend(backend).device == "cpu" or backend_module(backend).status().simulated:
        # host memory: no more than the machine's available memory
        assert free <= host_memory.free_bytes() * 1.5 + 2 ** 30


def _fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cgroup: str, mountinfo: str,
               meminfo_kib: int = 8_000_000) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal:  16000000 kB\nMemAvailable:  {meminfo_kib} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / "self" / "status").write_text("Name: python\nVmSize:  1048576 kB\n")
    monkeypatch.setattr(host_memory, "PROC", proc)
    return proc


def test_host_free_memory_is_the_smallest_of_meminfo_cgroup_v2_and_rlimit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cg"
    job = root / "user.slice" / "job"
    job.mkdir(parents=True)
    (job / "memory.max").write_text(f"{6 * 2 ** 30}\n")  # a 6 GiB limit
    (job / "memory.current").write_text(f"{2 * 2 ** 30}\n")
    (job / "memory.stat").write_text(f"anon 1\ninactive_file {2 ** 30}\n")  # reclaimable
    (root / "user.slice" / "memory.max").write_text("max\n")
    (root / "user.slice" / "memory.current").write_text("1\n")
    _fake_host(tmp_path, monkeypatch, "0::/user.slice/job\n",
               f"30 20 0:26 / {root} rw,nosuid shared:9 - cgroup2 cgroup2 rw\n")
    assert host_memory.free_bytes() == 5 * 2 ** 30  # 6 - 2 + 1 GiB, under MemAvailable
    (job / "memory.max").write_text("max\n")
    assert host_memory.free_bytes() == 8_000_000 * 1024  # MemAvailable
    fake = SimpleNamespace(RLIMIT_AS=9, RLIM_INFINITY=-1, getrlimit=lambda _: (4 * 2 ** 30, -1))
    monkeypatch.setattr(host_memory, "resource", fake)
    assert host_memory.free_bytes() == 3 * 2 ** 30  # RLIMIT_AS 4 GiB - VmSize 1 GiB


def test_host_free_memory_reads_a_cgroup_v1_memory_controller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "memory"  # a container's view: the mount's root is its own group
    mount.mkdir()
    (mount / "memory.limit_in_bytes").write_text(f"{3 * 2 ** 30}\n")
    (mount / "memory.usage_in_bytes").write_text(f"{2 ** 30}\n")
    (mount / "memory.stat").write_text("total_inactive_file 0\n")
    _fake_host(tmp_path, monkeypatch, "5:memory:/docker/abc\n0::/\n",
               f"40 30 0:30 /docker/abc {mount} rw - cgroup cgroup rw,memory\n")
    assert host_memory.free_bytes() == 2 * 2 ** 30
    (mount / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert host_memory.free_bytes() == 8_000_000 * 1024


def _textbook_draw(sizes: list[int], seed: int, relu: bool) -> dict[str, np.ndarray]:
    """An MLP's initial weights drawn in float64 in one call per block: He's sqrt(2 / n_in)
    into relu layers, Glorot's sqrt(2 / (n_in + n_out)) elsewhere (the output layer)."""
    rng = np.random.default_rng(seed)
    names = ["x", *[f"h{i}" for i in range(1, len(sizes) - 1)], "y"]
    weights = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        into_relu = relu and i < len(sizes) - 2
        std = np.sqrt(2 / a) if into_relu else np.sqrt(2 / (a + b))
        weights[f"{names[i]}->{names[i + 1]}"] = rng.normal(0.0, std, size=(b, a))
    return weights


@pytest.mark.parametrize("chunk", [None, 7, 1], ids=["default", "chunk7", "chunk1"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_initial_weights_are_a_float64_draw_cast_to_the_dtype(
        backend: str, monkeypatch: pytest.MonkeyPatch, chunk: int | None, dtype: str) -> None:
    if chunk is not None:  # drawn chunk by chunk: the same values as one call per block
        monkeypatch.setattr(init, "CHUNK", chunk)
    sizes = [9, 11, 4]
    params = gpuback.Network(gpuback.mlp_spec(sizes), backend=backend, dtype=dtype,
                             seed=3).parameters()
    for name, w in _textbook_draw(sizes, 3, relu=True).items():
        assert params[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(params[name], w.astype(dtype))
    for bias in ("h1", "y"):
        np.testing.assert_array_equal(params[bias], np.zeros(sizes[-1] if bias == "y" else 11))


def test_no_float64_copy_of_the_whole_network_is_made(backend: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(init, "CHUNK", 2 ** 14)
    sizes = [1000, 500]  # 500,000 weights: 2 MB per float32 buffer, 4 MB as a float64 copy
    tracemalloc.start()
    try:
        net = gpuback.Network(gpuback.mlp_spec(sizes, loss="sum_of_squares"), backend=backend,
                              dtype="float32")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    buffers = 2 * net.layout.size * 4  # parameters and gradients
    assert peak < buffers + 2 ** 14 * 12 + 2 ** 20, (peak, buffers)  # + one chunk, + slack
