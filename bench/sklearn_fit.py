"""``fit`` time of scikit-learn's MLPClassifier against gpuback's, same settings, same model.

On the digits (1437 training images of 8x8 pixels, ``gpuback.datasets.load_digits``), both
estimators are fitted with the same arguments and ``random_state``; being the same model
(``docs/guide/sklearn.md``), they reach the same test accuracy, which the script prints
beside the median ``fit`` seconds of ``--repeats`` fits and the ratio gpuback / scikit-learn
(below 1: gpuback is faster). Rows: each ``--backends`` entry in float64 (what scikit-learn
computes in for float64 ``X``) and float32 (``X`` cast to float32: both compute in float32).
Run::

    python bench/sklearn_fit.py [--hidden 256 256] [--solver adam] [--max-iter 30]
        [--backends cpu numpy] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from typing import Any

import numpy as np
import sklearn.neural_network
from sklearn.exceptions import ConvergenceWarning

import gpuback
from gpuback.sklearn import MLPClassifier


def median_fit(make: Any, X: np.ndarray, y: np.ndarray, repeats: int) -> tuple[float, Any]:
    """The median seconds of ``repeats`` fits of ``make()`` on ``(X, y)``, and the last
    fitted model."""
    times, model = [], None
    for _ in range(repeats):
        model = make()
        start = time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--solver", default="adam", choices=["sgd", "adam", "lbfgs"])
    parser.add_argument("--max-iter", type=int, default=30)
    parser.add_argument("--backends", nargs="+", default=["cpu", "numpy"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    d = gpuback.datasets.load_digits()
    settings = {"hidden_layer_sizes": tuple(args.hidden), "solver": args.solver,
                "max_iter": args.max_iter, "random_state": 0}
    print(f"{platform.processor() or platform.machine()}; scikit-learn "
          f"{sklearn.__version__}, gpuback {gpuback.__version__}; {settings}")
    print(f"{'estimator':24s} {'dtype':8s} {'fit s':>8s} {'ratio':>6s} {'test acc':>8s}")
    warnings.simplefilter("ignore", ConvergenceWarning)
    for dtype in (np.float64, np.float32):
        X, X_test = d.X_train.astype(dtype), d.X_test.astype(dtype)
        theirs, model = median_fit(lambda: sklearn.neural_network.MLPClassifier(**settings),
                                   X, d.y_train, args.repeats)
        name = np.dtype(dtype).name
        print(f"{'scikit-learn':24s} {name:8s} {theirs:8.3f} {1.0:6.2f} "
              f"{model.score(X_test, d.y_test):8.4f}")
        for backend in args.backends:
            ours, model = median_fit(lambda b=backend: MLPClassifier(**settings, backend=b),
                                     X, d.y_train, args.repeats)
            print(f"{'gpuback ' + backend:24s} {name:8s} {ours:8.3f} {ours / theirs:6.2f} "
                  f"{model.score(X_test, d.y_test):8.4f}")


if __name__ == "__main__":
    main()
