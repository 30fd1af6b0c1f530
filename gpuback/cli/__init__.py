"""The ``gpuback`` command (``gpuback --help``): train, predict, evaluate, spec, bench, ...

``app``: the parser and the commands' dispatch. One module per command family beside it,
none importing another:

    train, train_options, train_setup   ``train``: the run; its options; what it starts from
    predict                             ``predict`` and ``evaluate``
    spec                                ``spec``
    diagnose                            ``gradcheck``, ``explain``, ``info``
    bench                               ``bench``

and what they share:

    run_settings, run_data   a train run's saved settings and the data they name
    history                  ``OUT/history.jsonl``
    options                  option types (every number checked by ``Numbers``), help lines
    files                    input read with errors that name it, outputs written whole
    output                   stdout with ``--json`` and under MPI
    failures, exit_codes     errors, the exit code and the line each failure gets
    signals                  SIGTERM and SIGHUP stop a run as Ctrl-C does
"""

from __future__ import annotations

from .app import main

__all__ = [
    "main",
]
