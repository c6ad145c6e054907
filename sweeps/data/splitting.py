"""Splitting rows into train / validation / test.

Classification splits each class in the same proportions (stratified);
regression splits at random. The split depends only on the labels, the
fractions and the seed (`np.random.default_rng(seed)`).

Example:
    >>> import numpy as np
    >>> train, val, test = split_rows(np.array([0, 1] * 5), "binary", 0.2, 0.0, 0, "y", "t", [])
    >>> len(train), len(val), len(test)
    (8, 2, 0)
"""

from __future__ import annotations

import numpy as np


def split_rows(
    labels: np.ndarray,
    task: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    target: str,
    source: str,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffles rows into (train, val, test) index arrays.

    Classification splits each class in the same proportions (stratified);
    a class with 2 or more rows gets at least one validation row, and keeps
    at least one training row. Regression splits at random.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    if task == "regression":
        groups = [np.arange(n)]
    else:
        groups = [np.flatnonzero(labels == k) for k in range(int(labels.max()) + 1)]
    parts: tuple[list, list, list] = ([], [], [])
    for group in groups:
        group = rng.permutation(group)
        n_val, n_test = split_sizes(len(group), val_fraction, test_fraction)
        parts[1].append(group[:n_val])
        parts[2].append(group[n_val : n_val + n_test])
        parts[0].append(group[n_val + n_test :])
    train, val, test = (rng.permutation(np.concatenate(part)) for part in parts)

    if len(train) < 2 or len(val) < 1:
        raise ValueError(
            f"`n_train >= 2 and n_val >= 1` must hold, but splitting the {n} rows of "
            f"{source} with val_fraction={val_fraction}, test_fraction={test_fraction} "
            f"gave (n_train={len(train)}, n_val={len(val)}); use more rows or other "
            "fractions"
        )
    how = "at random" if task == "regression" else f"stratified by {target!r}"
    notes.append(f"split {len(train)}/{len(val)}/{len(test)} rows (train/val/test) with seed {seed}, {how}")
    return train, val, test


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Rows of a group of n that go to (val, test), rounded half up."""
    n_val = int(np.floor(n * val_fraction + 0.5))
    n_test = int(np.floor(n * test_fraction + 0.5))
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    if test_fraction > 0 and n >= 3:
        n_test = max(n_test, 1)
    # Keep at least one row of the group for training: trim test, then val.
    excess = max(n_val + n_test - (n - 1), 0)
    trim_test = min(excess, n_test)
    return n_val - (excess - trim_test), n_test - trim_test
