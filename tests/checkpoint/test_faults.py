"""Checkpoints under faults: a crash, Ctrl-C or a full disk at every step of a save, the crash
point swept, not fixed; concurrent savers and readers; flipped and truncated bytes; foreign
files. After every fault the path holds a loadable checkpoint, the old one or the new one,
whole (weights, epoch count and optimiser state from the same save), and the next save
leaves no debris.

The sweeps fork the test process once per crash point (cheap: no re-import) and, in the
child only, install an audit hook (``sys.addaudithook``) that counts the file-system
operations of the save (every open, rename/replace, mkdir, rmdir, unlink, rmtree and flock
under the checkpoint's path) and acts at the N-th: SIGKILL (kill -9), KeyboardInterrupt
(Ctrl-C) or ``OSError(ENOSPC)`` / ``EROFS`` / ``EIO``. Writes inside a file are swept
byte by byte with ``RLIMIT_FSIZE``: the kernel stops the child with SIGXFSZ when a write
crosses the limit (a crash in the middle of any write, safetensors' own included), or,
with SIGXFSZ ignored, fails the write with EFBIG as a full disk fails it with ENOSPC.
Checkpoints are backend-independent, so these run on the numpy backend.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import numpy as np
import pytest
from helpers.checkpoint_files import current, entries, only_one_version, version_folder

import gpuback
from gpuback.checkpoint import files as checkpoint
from gpuback.checkpoint import versioned_dir
from gpuback.checkpoint.files import CheckpointError
from gpuback.optim import optimizers as optim

SPEC = gpuback.mlp_spec([3, 4, 2], activation="tanh")
EVENTS = {"open", "os.rename", "os.mkdir", "os.rmdir", "os.remove", "shutil.rmtree",
          "fcntl.flock", "os.chmod", "os.truncate"}
EXIT_DONE, EXIT_CHECKPOINT_ERROR, EXIT_OTHER_ERROR = 3, 4, 5


def _trained(seed: int, steps: int) -> tuple[gpuback.Network, optim.Optimizer]:
    """A network and its Adam state after ``steps`` steps; ``epochs_trained`` = seed, so
    every saved version says which save it came from."""
    net = gpuback.Network(SPEC, seed=seed)
    opt = optim.Adam(lr=1e-2)
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(6, 3)), rng.integers(0, 2, size=6)
    for _ in range(steps):
        net.loss_and_grads(X, y)
        opt.step(net)
    net.epochs_trained = seed
    return net, opt


OLD, NEW, NEXT = _trained(1, 2), _trained(2, 3), _trained(3, 1)


def _assert_holds(target: pathlib.Path, *expected: tuple[gpuback.Network, optim.Optimizer]
                  ) -> gpuback.Network:
    """The checkpoint at ``target`` loads and is one of ``expected``, whole."""
    loaded = gpuback.Network.load(target)
    matches = [(net, opt) for net, opt in expected if net.epochs_trained ==
               loaded.epochs_trained]
    assert matches, f"epoch {loaded.epochs_trained} is none of the saves"
    net, opt = matches[0]
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], value, err_msg=name)
    restored = checkpoint.load_optimizer(target, loaded)
    assert restored is not None and restored.steps == opt.steps
    for name, buffers in opt.state_dict()["buffers"].items():
        for buf, value in buffers.items():
            np.testing.assert_array_equal(restored.state_dict()["buffers"][name][buf], value)
    return loaded


def _assert_clean_after_next_save(target: pathlib.Path) -> None:
    checkpoint.save(NEXT[0], target, NEXT[1])
    _assert_holds(target, NEXT)
    assert only_one_version(target), entries(target)
    assert entries(version_folder(target)) == sorted(checkpoint.FILES)


def _in_child(target: pathlib.Path, crash_at: int, act: Callable[[], None],
              before: Callable[[], None] = lambda: None) -> tuple[int, int]:
    """Fork; in the child, save NEW to ``target`` with ``act()`` run at the ``crash_at``-th
    file-system event of the save. Returns (exit code or -signal, events counted)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = EXIT_OTHER_ERROR
        count = 0
        try:
            os.close(read_end)
            prefix = str(target)

            def hook(event: str, args: tuple) -> None:
                nonlocal count
                if event not in EVENTS:
                    return
                if event != "fcntl.flock" and not any(
                        isinstance(a, (str, bytes, os.PathLike)) and
                        os.fsdecode(a).startswith(prefix) for a in args):
                    return
                count += 1
                os.write(write_end, b".")
                if count == crash_at:
                    act()

            before()
            sys.addaudithook(hook)
            checkpoint.save(NEW[0], target, NEW[1])
            code = EXIT_DONE if count < crash_at else 0
        except KeyboardInterrupt:
            code = 130
        except CheckpointError:
            code = EXIT_CHECKPOINT_ERROR
        except BaseException:
            code = EXIT_OTHER_ERROR
        finally:
            os._exit(code)
    os.close(write_end)
    counted = 0
    while chunk := os.read(read_end, 4096):
        counted += len(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return (os.waitstatus_to_exitcode(status), counted)


def _fresh(tmp_path: pathlib.Path, start: str) -> pathlib.Path:
    """The checkpoint path before the faulty save: nothing, OLD, or OLD in format 1."""
    target = tmp_path / "model"
    shutil.rmtree(target, ignore_errors=True)
    if start == "first":
        return target
    checkpoint.save(OLD[0], target, OLD[1])
    if start == "format-1":
        _to_format_1(target)
    return target


def _to_format_1(target: pathlib.Path) -> None:
    """Rewrite a checkpoint as gpuback's format 1 wrote it: four files, no versions."""
    folder = version_folder(target)
    for name in checkpoint.FILES:
        shutil.copy(folder / name, target / name)
    meta = json.loads((target / "network.json").read_text())
    meta.pop("metadata")  # format 1 had none
    (target / "network.json").write_text(json.dumps({**meta, "format": 1}))
    shutil.rmtree(folder)
    for name in ("latest.json", ".lock"):
        (target / name).unlink()


def _expected_after(start: str) -> tuple:
    return (NEW,) if start == "first" else (OLD, NEW)


def _assert_loadable_or_absent(target: pathlib.Path, start: str) -> None:
    if start == "first" and not checkpoint.exists(target):
        with pytest.raises(CheckpointError):
            gpuback.Network.load(target)
        return
    _assert_holds(target, *_expected_after(start))


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _interrupt() -> None:
    raise KeyboardInterrupt


def _sweep(tmp_path: pathlib.Path, start: str, act: Callable[[], None],
           allowed: set[int]) -> int:
    """Crash a save at every event in turn; check the path after each. Returns the number
    of crash points swept."""
    for crash_at in range(1, 400):
        target = _fresh(tmp_path, start)
        code, counted = _in_child(target, crash_at, act)
        if code == EXIT_DONE:  # the save finished before that many events: all swept
            assert counted == crash_at - 1
            _assert_holds(target, NEW)
            return crash_at - 1
        assert code in allowed, f"crash point {crash_at}: exit {code}"
        _assert_loadable_or_absent(target, start)
        _assert_clean_after_next_save(target)
    raise AssertionError("the sweep never reached the end of the save")


@pytest.mark.slow
@pytest.mark.parametrize("start", ["first", "replace", "format-1"])
def test_kill_9_at_every_file_operation_of_a_save(tmp_path, start: str) -> None:
    swept = _sweep(tmp_path, start, _kill, allowed={-signal.SIGKILL})
    assert swept >= 15  # lock, staging, 4 files written and read back, rename, pointer, ...


@pytest.mark.slow
@pytest.mark.parametrize("start", ["first", "replace"])
def test_ctrl_c_at_every_file_operation_of_a_save(tmp_path, start: str) -> None:
    _sweep(tmp_path, start, _interrupt, allowed={130, 0})


@pytest.mark.slow
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EIO, errno.EACCES])
def test_an_os_error_at_every_file_operation_is_a_checkpoint_error(tmp_path, code) -> None:
    def fail() -> None:
        raise OSError(code, os.strerror(code))

    # 0: the error hit a best-effort step (removing an old version) and the save went on
    _sweep(tmp_path, "replace", fail, allowed={EXIT_CHECKPOINT_ERROR, 0})


def _largest_file(target: pathlib.Path) -> int:
    return max(p.stat().st_size for p in [*version_folder(target).iterdir(),
                                          target / "latest.json"])


def _limit_file_size(limit: int, ignore_sigxfsz: bool) -> Callable[[], None]:
    def before() -> None:
        # Python starts with SIGXFSZ ignored; its default action stops the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN if ignore_sigxfsz else signal.SIG_DFL)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]  # (raising it needs root)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    return before


@pytest.mark.slow
@pytest.mark.parametrize("ignore_sigxfsz", [False, True], ids=["killed-mid-write", "EFBIG"])
def test_a_crash_or_a_full_disk_in_the_middle_of_every_write(tmp_path,
                                                             ignore_sigxfsz: bool) -> None:
    target = _fresh(tmp_path, "replace")
    largest = _largest_file(target)
    outcomes = set()
    for limit in [*range(0, 64), *range(64, largest + 1, 23), largest]:
        target = _fresh(tmp_path, "replace")
        code, _ = _in_child(target, 10**9, lambda: None,
                            before=_limit_file_size(limit, ignore_sigxfsz))
        outcomes.add(code)
        allowed = {EXIT_CHECKPOINT_ERROR} if ignore_sigxfsz else {-signal.SIGXFSZ}
        assert code in allowed | {EXIT_DONE}, f"limit {limit}: exit {code}"
        _assert_holds(target, OLD if code != EXIT_DONE else NEW)
        _assert_clean_after_next_save(target)
    assert len(outcomes) == 2  # some limits stopped the save, the largest let it finish


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


SMALL_DISK_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import gpuback
    from gpuback import checkpoint
    target = sys.argv[1] + "/model"
    small = gpuback.Network(gpuback.mlp_spec([3, 4, 2]), seed=1)
    small.epochs_trained = 1
    small.save(target)
    big = gpuback.Network(gpuback.mlp_spec([3, 20000, 2]), seed=2)  # ~480 kB of weights
    try:
        big.save(target)
        error = None
    except checkpoint.CheckpointError as exc:
        error = str(exc)
    kept = gpuback.Network.load(target)
    same = all(np.array_equal(kept.parameters()[k], v) for k, v in small.parameters().items())
    small.epochs_trained = 2
    small.save(target)  # with the space back: works, and cleans up
    print(json.dumps({"error": error, "kept_old": same, "epochs": kept.epochs_trained,
                      "entries": sorted(__import__("os").listdir(target))}))
""")


@pytest.mark.slow
def test_a_full_small_file_system(tmp_path) -> None:
    """A real full disk where this machine lets a test mount a 256 kB tmpfs (a user and
    mount namespace, no root needed); elsewhere the same save hits EFBIG from a 256 kB
    file-size limit, the same failed write() the kernel gives a full disk."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "small_disk.py"
    script.write_text(SMALL_DISK_SCRIPT)
    command = [sys.executable, str(script), str(disk)]
    if _unshare_works():
        mount = f"mount -t tmpfs -o size=256k tmpfs {disk} && exec \"$@\""
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount,
                   "sh", *command]
        expected = "No space left on device"
    else:
        command = [sys.executable, "-c", "import resource, signal, sys, runpy; "
                   "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                   "resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, "
                   "resource.getrlimit(resource.RLIMIT_FSIZE)[1])); "
                   "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
                   str(script), str(disk)]
        expected = "File too large"
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and expected in result["error"]
    assert "the previous checkpoint is unchanged" in result["error"]
    assert "\n" not in result["error"]
    assert result["kept_old"] and result["epochs"] == 1
    assert len([e for e in result["entries"] if e.startswith("v")]) == 1
    assert not [e for e in result["entries"] if e.startswith(".staging")]


# --- the commit point and fsync order ---------------------------------------------------

def test_every_file_and_directory_is_fsynced_before_the_pointer_switches(tmp_path,
                                                                        monkeypatch) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    log: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        log.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    checkpoint.save(NEW[0], target, NEW[1])
    monkeypatch.undo()
    folder = version_folder(target)
    switch = log.index(("replace", str(target / "latest.json")))
    synced_before = {path for kind, path in log[:switch] if kind == "fsync"}
    staged = {p for p in synced_before if "/.staging-" in p}
    assert {pathlib.Path(p).name for p in staged} >= set(checkpoint.FILES)
    assert str(target) in synced_before  # the rename of the staging folder to its version
    pointer_temp = [path for kind, path in log[:switch]
                    if kind == "fsync" and pathlib.Path(path).name.startswith(".latest.json.")]
    assert len(pointer_temp) == 1  # the new pointer's contents are on disk before it counts
    synced_after = [path for kind, path in log[switch:] if kind == "fsync"]
    assert str(target) in synced_after  # the pointer switch itself
    assert folder.name > "v00000001"


# --- concurrency ------------------------------------------------------------------------

def _saver(target: pathlib.Path, which: tuple, rounds: int) -> int:
    failures = 0
    for _ in range(rounds):
        try:
            checkpoint.save(which[0], target, which[1])
        except Exception:
            failures += 1
    return failures


def _reader(target: pathlib.Path, stop: pathlib.Path) -> int:
    """Load over and over while the savers run: each ``Network.load`` is one save's network,
    whole, and each ``load_optimizer`` one save's optimiser, whole. (The two calls are two
    reads: a save may land between them; ``load_optimizer``'s docstring says so.)"""
    failures = 0
    host = gpuback.Network(SPEC)
    while not stop.exists():
        try:
            loaded = gpuback.Network.load(target)
            net = {1: OLD, 2: NEW}[loaded.epochs_trained][0]
            assert all(np.array_equal(loaded.parameters()[k], v)
                       for k, v in net.parameters().items())
            restored = checkpoint.load_optimizer(target, host)
            opt = {OLD[1].steps: OLD[1], NEW[1].steps: NEW[1]}[restored.steps]
            assert all(np.array_equal(restored.state_dict()["buffers"][n][b], v)
                       for n, bufs in opt.state_dict()["buffers"].items()
                       for b, v in bufs.items())
        except (Exception, AssertionError):
            failures += 1
    return failures


def _fork(work: Callable[[], int]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = min(work(), 98)
        finally:
            os._exit(code)
    return pid


def test_concurrent_savers_and_readers(tmp_path) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    stop = tmp_path / "stop"
    readers = [_fork(lambda: _reader(target, stop)) for _ in range(2)]
    savers = [_fork(lambda which=which: _saver(target, which, 40)) for which in (OLD, NEW)]
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in savers]
    stop.touch()
    codes += [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in readers]
    assert codes == [0, 0, 0, 0], "failed saves and loads per process: " + repr(codes)
    _assert_holds(target, OLD, NEW)
    assert only_one_version(target), entries(target)
    assert entries(tmp_path) == ["model", "stop"]


def test_a_second_writer_waits_for_the_lock_and_then_says_who_holds_it(tmp_path,
                                                                       monkeypatch) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    monkeypatch.setattr(versioned_dir, "LOCK_TIMEOUT", 0.3)
    with open(target / ".lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(CheckpointError, match=r"another process has held its lock "
                                                  r".*for over 0\.3 s"):
            checkpoint.save(NEW[0], target, NEW[1])
        assert time.monotonic() - started >= 0.3
        with pytest.raises(CheckpointError, match="held its lock"):
            gpuback.Network.load(target)  # a reader waits for a save in progress too
    _assert_holds(target, OLD)
    assert only_one_version(target)


# --- corrupted files --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", [*checkpoint.FILES, "latest.json"])
def test_every_flipped_byte_is_an_error_naming_the_file(tmp_path, name: str) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    file = target / name if name == "latest.json" else current(target, name)
    original = file.read_bytes()
    # every byte of the small files; an even spread over the larger ones, both ends whole
    offsets = sorted({*range(0, len(original), max(1, len(original) // 300)),
                      *range(min(64, len(original))), *range(len(original) - 64, len(original))})
    for offset in offsets:
        for mask in (0x01, 0x80):
            damaged = bytearray(original)
            damaged[offset] ^= mask
            file.write_bytes(bytes(damaged))
            with pytest.raises(CheckpointError) as info:
                gpuback.Network.load(target)
                checkpoint.load_optimizer(target, gpuback.Network(SPEC))
            message = str(info.value)
            assert "\n" not in message
            if name != "latest.json":
                assert f"{name}:" in message, (offset, message)
                assert "corrupted" in message
    file.write_bytes(original)
    _assert_holds(target, OLD)


@pytest.mark.parametrize("name", checkpoint.FILES)
def test_a_truncated_file_is_an_error_naming_it(tmp_path, name: str) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    file = current(target, name)
    original = file.read_bytes()
    for size in (0, 1, len(original) // 2, len(original) - 1):
        file.write_bytes(original[:size])
        with pytest.raises(CheckpointError, match=rf"{name}: {size} bytes, but "
                                                  rf"{len(original)} were written"):
            gpuback.Network.load(target)
            checkpoint.load_optimizer(target, gpuback.Network(SPEC))


def test_a_pointer_to_a_missing_version_is_named(tmp_path) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    shutil.rmtree(version_folder(target))
    with pytest.raises(CheckpointError, match=r"v00000001: missing; .*latest\.json names it"):
        gpuback.Network.load(target)
    _assert_clean_after_next_save(target)


def test_a_damaged_pointer_keeps_the_versions_for_one_save(tmp_path) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    old_version = version_folder(target)
    (target / "latest.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"latest\.json: not valid JSON"):
        gpuback.Network.load(target)
    checkpoint.save(NEW[0], target, NEW[1])
    assert old_version.is_dir()  # still there to recover by hand
    _assert_holds(target, NEW)
    _assert_clean_after_next_save(target)
    assert not old_version.exists()


# --- files a checkpoint did not write ---------------------------------------------------

def test_files_a_checkpoint_did_not_write_are_kept(tmp_path) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    (target / "notes.txt").write_text("mine")
    (target / "plots").mkdir()
    inside = version_folder(target) / "README.txt"
    inside.write_text("also mine")
    checkpoint.save(NEW[0], target, NEW[1])
    checkpoint.save(NEXT[0], target, NEXT[1])
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "plots").is_dir()
    assert inside.read_text() == "also mine"
    assert entries(inside.parent) == ["README.txt"]  # its own files are gone
    _assert_holds(target, NEXT)


def test_a_directory_with_other_files_and_no_checkpoint_is_refused(tmp_path) -> None:
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(CheckpointError, match=r"holds files but no gpuback checkpoint "
                                              r"\(thesis\.tex\); refusing to save into it"):
        checkpoint.save(OLD[0], folder)
    assert entries(folder) == ["thesis.tex"]
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(CheckpointError, match="exists and is not a directory"):
        checkpoint.save(OLD[0], file)


def test_a_format_1_checkpoint_loads_and_the_next_save_replaces_it(tmp_path) -> None:
    target = tmp_path / "model"
    checkpoint.save(OLD[0], target, OLD[1])
    _to_format_1(target)
    (target / "notes.txt").write_text("mine")
    assert checkpoint.exists(target)
    _assert_holds(target, OLD)
    checkpoint.save(NEW[0], target, NEW[1])
    _assert_holds(target, NEW)
    assert entries(target) == [".lock", "latest.json", "notes.txt", version_folder(target).name]
