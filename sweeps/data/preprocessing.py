"""Fitting the feature preprocessing on the training split and applying it
to every split: imputation, encoding and standardization.

Every statistic (median, categories, mean, std) comes from the training
split only, so validation and test rows never leak into the preprocessing.
Missing text values (empty or blank cells) are not a category of their own:
like categories first seen in val/test, they encode as all-zero indicators.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sweeps.data.columns import as_text, is_text, missing_mask


def impute_numeric(
    parts: list[pd.DataFrame], coerced: set[str], source: str, notes: list[str]
) -> list[pd.DataFrame]:
    """Fills missing or infinite numbers with the train median, per column."""
    train = parts[0]
    filled = [part.copy() for part in parts]
    for name, column in train.items():
        if is_text(column) or pd.api.types.is_bool_dtype(column):
            continue
        columns = [part[name].to_numpy(dtype=np.float64) for part in parts]
        bad = [~np.isfinite(values) for values in columns]
        n_bad = int(sum(mask.sum() for mask in bad))
        if n_bad == 0:
            if name in coerced:
                notes.append(f"coerced {name!r} from text to numbers")
            continue
        train_values = columns[0][~bad[0]]
        if train_values.size == 0:
            raise ValueError(
                f"column {name!r} in {source} has no values in the training split "
                f"({len(train)} rows), so it has no median to impute; leave it out "
                f"with drop=[{name!r}]"
            )
        median = float(np.median(train_values))
        for part, values, mask in zip(filled, columns, bad):
            part[name] = np.where(mask, median, values)
        if name in coerced:
            notes.append(
                f"coerced {name!r} to numbers: {n_bad} blank or non-numeric values "
                f"imputed with the train median {median:.6g}"
            )
        else:
            notes.append(
                f"imputed {n_bad} missing or infinite values in {name!r} with the "
                f"train median {median:.6g}"
            )
    return filled


def encode_features(
    parts: list[pd.DataFrame], notes: list[str]
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Turns every column into float64 features, in column order.

    Numbers pass through; booleans become 0/1; text becomes one indicator
    per category seen in train ("name=value"). Missing text and categories
    not seen in train are all-zero.

    Returns:
        ([(rows, features) float64 per split], feature_names).
    """
    blocks: list[list[np.ndarray]] = [[] for _ in parts]
    names: list[str] = []
    text_columns, booleans, one_hot = 0, 0, 0
    for name, column in parts[0].items():
        if pd.api.types.is_bool_dtype(column):
            booleans += 1
            names.append(name)
            for block, part in zip(blocks, parts):
                block.append(part[name].to_numpy(dtype=np.float64)[:, None])
        elif is_text(column):
            text_columns += 1
            categories = _train_categories(column)
            names.extend(f"{name}={category}" for category in categories)
            one_hot += len(categories)
            unseen = 0
            for block, part in zip(blocks, parts):
                indicators, n_unseen = _one_hot(part[name], categories)
                block.append(indicators)
                unseen += n_unseen
            n_missing = sum(int(missing_mask(part[name]).sum()) for part in parts)
            if n_missing:
                notes.append(
                    f"{n_missing} missing values of {name!r} encoded as all-zero"
                )
            if unseen:
                notes.append(
                    f"{unseen} val/test values of {name!r} not seen in train encoded "
                    "as all-zero"
                )
        else:
            names.append(name)
            for block, part in zip(blocks, parts):
                block.append(part[name].to_numpy(dtype=np.float64)[:, None])
    if booleans:
        notes.append(f"converted {booleans} boolean columns to 0/1")
    if text_columns:
        notes.append(
            f"one-hot encoded {text_columns} text columns into {one_hot} features "
            "(categories from train)"
        )
    arrays = [
        np.concatenate(block, axis=1) if block else np.zeros((len(part), 0))
        for block, part in zip(blocks, parts)
    ]
    return arrays, tuple(names)


def _train_categories(column: pd.Series) -> list[str]:
    """Sorted distinct present values of a text column, as str."""
    return sorted(set(as_text(column)[~missing_mask(column)].tolist()))


def _one_hot(column: pd.Series, categories: list[str]) -> tuple[np.ndarray, int]:
    """(rows, len(categories)) float64 indicators, and the count of present
    values outside `categories`."""
    missing = missing_mask(column)
    codes = pd.Index(categories, dtype=object).get_indexer(
        as_text(column).to_numpy(dtype=object)
    )
    codes = np.where(missing, -1, codes)
    indicators = np.zeros((len(codes), len(categories)))
    rows = np.flatnonzero(codes >= 0)
    indicators[rows, codes[rows]] = 1.0
    unseen = int(np.sum((codes < 0) & ~missing))
    return indicators, unseen


def standardize(parts: list[np.ndarray], notes: list[str]) -> list[np.ndarray]:
    """Scales every feature by the train mean and std; constant features
    (std 0, up to rounding) get std 1, so they become 0 in train."""
    train = parts[0]
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    constant = std <= 1e-12 * np.abs(mean)
    std = np.where(constant, 1.0, std)
    note = f"standardized {train.shape[1]} features with train mean and std"
    if constant.any():
        note += f" ({int(constant.sum())} constant in train, now 0)"
    notes.append(note)
    return [
        np.ascontiguousarray((part - mean) / std, dtype=np.float32) for part in parts
    ]
