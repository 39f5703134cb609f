"""Reference data pushed with a model: the rows its drift baseline is built from.

A reference file sits beside ``model.onnx`` in the store as ``reference.csv`` (a header row of
feature names, then one row per example) or ``reference.parquet`` (one column per feature), and
its sha256 is recorded in ``metadata.json`` (``{"reference": {"file": ..., "sha256": ...}}``) and on
the `ModelVersion`, so a read is verified like the model's own bytes. Columns beyond the model's
features (a label, an id) are ignored; every feature the model takes must be a column.

`reference_matrix` is what the push checks before anything is uploaded and what the drift
baseline (`audit.drift`) reads after a verified download: one float64 row per example, in the
model's feature order, NaN where a cell is empty or not a number.
"""

import csv
from pathlib import Path

import numpy as np

REFERENCE_NAMES = {".csv": "reference.csv", ".parquet": "reference.parquet"}


class ReferenceInvalid(Exception):
    """The reference file cannot be read as rows of the model's features; the message says why."""


def reference_name(path: Path) -> str:
    """The name the file takes in the store, from its suffix, or `ReferenceInvalid`."""
    name = REFERENCE_NAMES.get(Path(path).suffix.lower())
    if name is None:
        raise ReferenceInvalid(f"reference {Path(path).name!r} must be a .csv or .parquet file")
    return name


def _number(cell) -> float:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return float("nan")
    return value


def _csv_columns(path: Path) -> dict[str, list]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise ReferenceInvalid("the reference file is empty") from None
        columns = {name: [] for name in header}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ReferenceInvalid(f"line {line} of the reference has {len(row)} cells, the header {len(header)}")
            for name, cell in zip(header, row, strict=True):
                columns[name].append(cell)
    return columns


def _parquet_columns(path: Path, names: list[str]) -> dict[str, list]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=[name for name in names if name in pq.read_schema(path).names])
    except Exception as exc:  # ArrowInvalid, OSError: not a parquet file
        raise ReferenceInvalid(f"the reference is not a readable parquet file: {str(exc)[:200]}") from None
    return {name: table.column(name).to_pylist() for name in table.column_names}


def reference_matrix(path: Path, feature_names: list[str]) -> np.ndarray:
    """The reference's rows as a float64 matrix in ``feature_names`` order, or `ReferenceInvalid`."""
    path = Path(path)
    name = reference_name(path)
    columns = _csv_columns(path) if name.endswith(".csv") else _parquet_columns(path, feature_names)
    missing = [feature for feature in feature_names if feature not in columns]
    if missing:
        raise ReferenceInvalid(f"the reference has no column for the features {missing[:10]}")
    matrix = np.array([[_number(cell) for cell in columns[feature]] for feature in feature_names], dtype=np.float64).T
    if matrix.shape[0] == 0:
        raise ReferenceInvalid("the reference has no rows")
    empty = [feature for index, feature in enumerate(feature_names) if np.isnan(matrix[:, index]).all()]
    if empty:
        raise ReferenceInvalid(f"the reference has no numeric value for the features {empty[:10]}")
    return matrix.reshape(-1, len(feature_names))
