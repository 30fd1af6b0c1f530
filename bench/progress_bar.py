"""What the progress bar costs: ``gpuback train`` with stderr on a terminal against the same
run with stderr redirected to a file (no bar), in the same session. Run::

    python bench/progress_bar.py [--repeats 3] [-- extra train options]

For each way, the median over ``--repeats`` runs of the samples per second the run reports
in its ``--json`` summary (the whole run, first epoch included), and the bytes the run
wrote to stderr. The terminal is a pseudo-terminal (``pty``) whose output is read and
counted, as a terminal emulator would; the bar redraws at most once every
``gpuback.training.REDRAW_SECONDS``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading


def train_once(extra: list[str], on_terminal: bool) -> tuple[float, int]:
    """One ``gpuback train --json`` run: its samples per second and the bytes of stderr."""
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "gpuback", "train", "--json", "--overwrite", "--out",
                out, *extra]
        if not on_terminal:
            with tempfile.TemporaryFile() as err:
                done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, check=True)
                return json.loads(done.stdout)["samples_per_second"], err.tell()
        controller, terminal = pty.openpty()
        # 80 x 24, as a terminal window has (a new pty is 0 x 0, where tqdm draws nothing)
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        received = [0]

        def drain() -> None:  # read the terminal as an emulator would, so writes never block
            while True:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                received[0] += len(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=terminal, check=True)
        finally:
            os.close(terminal)
            reader.join(timeout=5)
            os.close(controller)
        return json.loads(done.stdout)["samples_per_second"], received[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="options passed on to gpuback train")
    args = parser.parse_args()
    train_once(args.extra, on_terminal=False)  # compile and cache the kernels first
    print(f"{'stderr':<22} {'samples/s (median)':>20} {'stderr bytes':>14}")
    results = {}
    for name, on_terminal in (("a file (no bar)", False), ("a terminal (the bar)", True)):
        runs = [train_once(args.extra, on_terminal) for _ in range(args.repeats)]
        speed = statistics.median(r[0] for r in runs)
        results[name] = speed
        print(f"{name:<22} {speed:>20.0f} {statistics.median(r[1] for r in runs):>14.0f}")
    bar, plain = results["a terminal (the bar)"], results["a file (no bar)"]
    print(f"the bar's cost: {1 - bar / plain:.1%} of the throughput")


if __name__ == "__main__":
    main()
