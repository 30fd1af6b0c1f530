"""How many bytes this process can still allocate in host memory.

The smallest of the limits that apply (each one that cannot be read is left out):

* ``MemAvailable`` of ``/proc/meminfo``: what the kernel estimates it can hand out without
  swapping (free memory plus reclaimable caches);
* the memory cgroup of the process, and every cgroup above it: cgroup v2 ``memory.max``
  minus ``memory.current``, and cgroup v1 ``memory.limit_in_bytes`` minus
  ``memory.usage_in_bytes`` (where the memory controller is on v1), with the
  group's ``inactive_file`` page cache counted as free (the kernel reclaims it before it
  fails an allocation; ``docker stats`` counts the same way);
* ``RLIMIT_AS`` (``ulimit -v``) minus the process's current virtual size (``VmSize``).

Used by the host backends' ``free_memory`` op, and by the cuda backend's under the Numba
simulator, whose device arrays are host memory.
"""

from __future__ import annotations

import functools
import resource
from pathlib import Path

PROC = Path("/proc")
UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as a number near 2**63


def free_bytes() -> int:
    """Bytes of host memory this process can still allocate: the minimum over
    ``MemAvailable``, its memory cgroups and ``RLIMIT_AS`` (see the module docstring)."""
    limits = [_mem_available(), *_cgroup_room(), _address_space_room()]
    found = [n for n in limits if n is not None]
    return max(0, min(found)) if found else UNLIMITED


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _number(path: Path) -> int | None:
    """The integer in a one-value file; None for "max", a missing or unreadable file."""
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _mem_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where there is no such line)."""
    text = _read(PROC / "meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the file counts in kB (KiB)
    return None


def _stat(path: Path, key: str) -> int:
    """One counter of a cgroup's ``memory.stat`` (0 when absent)."""
    for line in (_read(path) or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _mounts(proc: Path) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """(root, mount point) of the cgroup v2 hierarchy and of the v1 memory controller."""
    v2 = v1 = None
    for line in (_read(proc / "self" / "mountinfo") or "").splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        before, _, after = line.partition(" - ")
        fstype, _, rest = after.partition(" ")
        root, point = before.split()[3], before.split()[4]
        if fstype == "cgroup2" and v2 is None:
            v2 = (root, point)
        elif fstype == "cgroup" and "memory" in rest.split()[-1].split(",") and v1 is None:
            v1 = (root, point)
    return v2, v1


def _cgroup_dirs(mount: tuple[str, str], path: str) -> list[Path]:
    """The directories of the cgroup ``path`` and of every group above it in ``mount``."""
    root, point = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    here = Path(point) / path.lstrip("/")
    dirs = [here, *here.parents]
    return [d for d in dirs if d == Path(point) or Path(point) in d.parents]


@functools.lru_cache(maxsize=4)
def _cgroup_files(proc: Path) -> tuple[tuple[Path, Path, Path, str, int], ...]:
    """(limit, usage, memory.stat, its reclaimable-cache key, "no limit" bound) of each
    memory cgroup from the process's own up to its hierarchy's root: found once (reading
    the mount table costs more than the counters; a process does not change cgroups).
    ``proc``: where procfs is mounted."""
    v2_path = v1_path = None
    for line in (_read(proc / "self" / "cgroup") or "").splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    v2_mount, v1_mount = _mounts(proc)
    files = []
    if v2_path is not None and v2_mount is not None:
        files += [(d / "memory.max", d / "memory.current", d / "memory.stat", "inactive_file",
                   UNLIMITED << 1) for d in _cgroup_dirs(v2_mount, v2_path)]
    if v1_path is not None and v1_mount is not None:  # a hybrid or v1-only system
        files += [(d / "memory.limit_in_bytes", d / "memory.usage_in_bytes", d / "memory.stat",
                   "total_inactive_file", UNLIMITED) for d in _cgroup_dirs(v1_mount, v1_path)]
    return tuple(files)


def _cgroup_room() -> list[int]:
    """Limit minus usage (with reclaimable page cache counted free) of each memory cgroup
    from the process's own up to the hierarchy's root that sets a limit (v2 writes "no
    limit" as "max", v1 as a number near 2**63)."""
    room = []
    for limit_file, usage_file, stat_file, key, unlimited in _cgroup_files(PROC):
        limit, usage = _number(limit_file), _number(usage_file)
        if limit is not None and usage is not None and limit < unlimited:
            room.append(limit - usage + _stat(stat_file, key))
    return room


def _address_space_room() -> int | None:
    """``RLIMIT_AS`` minus the current virtual size; None without such a limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    for line in (_read(PROC / "self" / "status") or "").splitlines():
        if line.startswith("VmSize:"):
            return soft - int(line.split()[1]) * 1024
    return soft  # no /proc: the limit alone bounds what can be allocated
