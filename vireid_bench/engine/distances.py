"""Distances between feature rows: L2 normalisation, cosine and Euclidean blocks.

Every scoring path (in memory, streamed, re-ranked, distributed) computes its distances
here, so the rules hold everywhere: float32 BLAS products, rows normalised for cosine with
a one-line error naming the first zero-norm row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vireid_bench.errors import DumpError

DISTANCES = ("cosine", "euclidean")


def normalised(
    source: str,
    name: str,
    features: np.ndarray,
    rows: np.ndarray,
    row_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``features`` L2-normalised (float32); only ``rows`` are checked for zero norm.

    Raises:
        DumpError: naming ``source`` and ``features/<name>`` and the first zero-norm row
            (its label from ``row_labels`` when given: the split row of a read block).
    """
    norms = np.linalg.norm(features, axis=1)
    zero = norms[rows] == 0
    if zero.any():
        first = int(rows[np.flatnonzero(zero)[0]])
        if row_labels is not None:
            first = int(row_labels[first])
        raise DumpError(
            source,
            f"features/{name}",
            f"{int(zero.sum())} zero-norm row(s) (first at row {first}); cosine distance "
            "is undefined (use --distance euclidean or fix the features)",
        )
    safe = np.where(norms == 0, 1.0, norms).astype(np.float32)
    return features / safe[:, None]


def distance_block(
    query: np.ndarray, gallery: np.ndarray, distance: str, gallery_sq: np.ndarray | None
) -> np.ndarray:
    """Return float32 [len(query), len(gallery)] distances (cosine or Euclidean).

    Cosine: ``1 - q.g`` on rows the caller normalised (:func:`normalised`). Euclidean:
    ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))`` with ``gallery_sq`` the gallery's squared norms.
    """
    product = query @ gallery.T
    if distance == "cosine":
        np.subtract(np.float32(1.0), product, out=product)
        return product
    query_sq = np.einsum("ij,ij->i", query, query)
    product *= -2.0
    product += query_sq[:, None]
    product += gallery_sq[None, :]
    np.maximum(product, 0.0, out=product)
    np.sqrt(product, out=product)
    return product


def row_reader(
    source: str, name: str, features, distance: str
) -> Callable[[np.ndarray], np.ndarray]:
    """Return a reader of (normalised for cosine) float32 rows for sorted split indices."""

    def read(rows: np.ndarray) -> np.ndarray:
        lazy = not isinstance(features, np.ndarray)
        # a fresh float32 copy either way (a file read, or fancy indexing)
        block = features.read_rows(rows) if lazy else features[rows]
        if distance == "cosine":
            norms = np.linalg.norm(block, axis=1)
            if not norms.all():
                # the same one-line error as the in-memory path, naming the split row
                normalised(source, name, block, np.arange(rows.size), row_labels=rows)
            block /= norms[:, None]  # in place: no second copy of the block
        return np.ascontiguousarray(block, dtype=np.float32)

    return read


def prepared_features(
    source: str, split, names: tuple[str, str], distance: str, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the (cross, same) feature arrays, L2-normalised for cosine (``rows`` checked).

    ``same`` is ``cross`` itself when both names are the same set.
    """

    def prepare(name: str) -> np.ndarray:
        array = split.features[name]
        if distance == "cosine":
            array = normalised(source, name, array, rows)
        return array

    cross = prepare(names[0])
    return cross, cross if names[1] == names[0] else prepare(names[1])
