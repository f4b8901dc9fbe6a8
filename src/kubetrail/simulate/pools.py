"""Value pools and bulk helpers shared by the line generators (choose many values with one numpy call)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubetrail.simulate.arrowtext import join
from kubetrail.simulate.timefmt import NS, format_seconds, second_index

__all__ = ["hex_ids", "pick", "stamp", "weighted"]


def pick(rng: np.random.Generator, pool: Sequence[str], n: int) -> list[str]:
    """``n`` uniform choices from ``pool``."""
    arr = np.asarray(pool, dtype=object)
    return list(arr[rng.integers(0, len(pool), n)])


def weighted(rng: np.random.Generator, pool: Sequence[str], weights: Sequence[float], n: int) -> list[str]:
    p = np.asarray(weights, dtype=float)
    arr = np.asarray(pool, dtype=object)
    return list(arr[rng.choice(len(pool), size=n, p=p / p.sum())])


def hex_ids(rng: np.random.Generator, n: int, nbytes: int = 16) -> list[str]:
    """``n`` random hex strings of ``2 * nbytes`` characters (one bulk draw)."""
    h = rng.bytes(n * nbytes).hex()
    w = 2 * nbytes
    return [h[i : i + w] for i in range(0, n * w, w)]


def stamp(ts_ns: np.ndarray, fmt: str, digits: int = 3, sep: str = ".", suffix: str = "") -> list[str]:
    """Per-line timestamps: ``strftime(fmt)`` once per distinct second, then ``sep`` + fraction digits
    (assembled by Arrow kernels, converted to Python strings in one call)."""
    inverse, seconds, frac = second_index(ts_ns)
    pre = pc.take(pa.array(format_seconds(seconds, fmt)), pa.array(inverse))
    if digits == 0:
        return list(pre.to_pylist()) if not suffix else list(join(pre, suffix).to_pylist())
    digits_arr = pc.utf8_lpad(
        pa.array(frac // (NS // 10**digits)).cast(pa.string()), width=digits, padding="0"
    )
    return list(join(pre, sep, digits_arr, suffix).to_pylist())
