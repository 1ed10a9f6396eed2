"""The feature-dump format (v1) as Python objects: constants and the loaded dataclasses.

A feature dump is what a model hands to the scorer: one feature vector per test image plus
the image's person id, camera and modality. The format is documented in
``docs/dump-format.md``; in brief, for ``N`` images:

* root attributes ``vireid_bench_format = 1``, ``dataset`` (str), ``model`` (str), optional
  ``description``, ``default_features``, ``cross_features``, ``same_features``,
  ``protocol_version`` (str, the protocol version the dump was built for), and the run
  metadata ``seed`` (int), ``run`` (str), ``selection`` (``test`` | ``val`` | ``last``),
  ``trained_on`` (str), ``synthetic`` (bool), ``distance_recipe`` (str, a per-pair
  recipe, :mod:`vireid_bench.io.recipe`);
* ``features/<name>``: float [N, D] (at least one set);
* ``pid`` int [N], ``cam`` int [N], ``modality`` uint8 [N] (0 = visible, 1 = infrared);
* optional ``path``: UTF-8 str [N], the image path relative to the dataset root.

A dump may instead hold several test splits as groups ``trials/0 .. trials/T-1``, each with
the per-image layout above (RegDB: one split per trial). Root attributes stay at the root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from vireid_bench.io.dump_open import corrupt_file_errors, open_read_only
from vireid_bench.io.recipe import DistanceRecipe

FORMAT_VERSION = 1
PROTOCOL_VERSION = "1.0"
"""Version of the evaluation protocol: presets, exclusion rules, CMC/mAP/mINP definitions and
aggregation. Dumps record the version they were built for (``protocol_version``); scoring a
dump built for another version warns. Bump it when a change alters a published number.
Defined here, at the bottom of the pipeline, because a dump records it;
:mod:`vireid_bench.protocol` re-exports it."""
VISIBLE = 0
INFRARED = 1
MODALITY_NAMES = {VISIBLE: "visible", INFRARED: "infrared"}
MODALITY_CODES = {name: code for code, name in MODALITY_NAMES.items()}

SELECTIONS = ("test", "val", "last")
"""How a dump's checkpoint was chosen (the ``selection`` attribute): the best epoch on the
test set itself (``test``, optimistic), the best on a validation split (``val``), or the
last epoch of a fixed schedule (``last``)."""

LAZY_READ_BYTES = 64 * 1024**2
"""Largest slab one read of :class:`LazyFeatures` brings into memory."""


@dataclass(frozen=True)
class FeatureSplit:
    """One test split: features and labels of ``N`` images, all arrays in the same order.

    Attributes:
        features: feature-set name -> float32 array [N, D] (D may differ between sets), or
            :class:`LazyFeatures` when the dump was loaded with ``lazy=True``.
        pid: int64 [N], person id.
        cam: int64 [N], camera id as the dataset numbers it; equal ids mean the same camera,
            whatever the modality.
        modality: uint8 [N], 0 = visible, 1 = infrared.
        path: object array [N] of str (image path relative to the dataset root), or None.
    """

    features: Mapping[str, np.ndarray]
    pid: np.ndarray
    cam: np.ndarray
    modality: np.ndarray
    path: np.ndarray | None = None

    @property
    def n_images(self) -> int:
        """Number of images in the split."""
        return int(self.pid.shape[0])


@dataclass(frozen=True)
class LazyFeatures:
    """A feature set left in its HDF5 file, read block by block (``load_dump(lazy=True)``).

    It was validated at load time in slabs (dtype, shape, finite values), so reads return
    checked float32 rows. The file is opened read-only for each read.

    Attributes:
        source: the dump file.
        field: the dataset's path in the file (``features/<name>`` or
            ``trials/<k>/features/<name>``).
        shape: (N, D).
    """

    source: str
    field: str
    shape: tuple[int, int]

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Return float32 [len(rows), D] for ascending row indices (slabs of bounded size)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, self.shape[1]), dtype=np.float32)
        if rows.size == 0:
            return out
        span = max(1, LAZY_READ_BYTES // (4 * self.shape[1]))
        with open_read_only(self.source) as handle, corrupt_file_errors(self.source):
            dataset = handle[self.field]
            i = 0
            while i < rows.size:
                first = int(rows[i])
                k = int(np.searchsorted(rows, first + span, side="left"))
                slab = np.asarray(dataset[first : int(rows[k - 1]) + 1], dtype=np.float32)
                out[i:k] = slab[rows[i:k] - first]
                i = k
        return out


@dataclass(frozen=True)
class FeatureDump:
    """A validated feature dump as loaded by :func:`~vireid_bench.io.dump_read.load_dump`.

    Attributes:
        source: the file it came from (a label used in error messages).
        dataset: the dataset convention name (``"generic"`` when none applies).
        model: the model's name.
        description: free text, may be empty.
        default_features: the feature set used when no per-pair policy is given.
        cross_features: the set used for pairs of different modality.
        same_features: the set used for pairs of the same modality.
        splits: the test splits; one unless the dump holds ``trials/<k>`` groups.
        has_trial_splits: True when the splits came from ``trials/<k>`` groups.
        feature_dims: feature-set name -> dimension D, for every set in the file (also those
            not loaded).
        protocol_version: the ``protocol_version`` root attribute (the protocol version the
            dump was built for), or None when the dump does not say.
        seed: the training seed (``seed`` attribute), None when the dump does not say.
        run: free text naming the training run (``run``), or None.
        selection: how the checkpoint was chosen, one of :data:`SELECTIONS`, or None.
        trained_on: the training dataset and split (``trained_on``), or None.
        synthetic: True when the ``synthetic`` attribute says the features come from
            synthetic data; None when the dump does not say (see :attr:`is_synthetic`).
        distance_recipe: the per-pair distance recipe (``distance_recipe`` attribute,
            :mod:`vireid_bench.io.recipe`); None: the ``cross_features`` /
            ``same_features`` policy.
    """

    source: str
    dataset: str
    model: str
    description: str
    default_features: str
    cross_features: str
    same_features: str
    splits: tuple[FeatureSplit, ...]
    has_trial_splits: bool = False
    feature_dims: Mapping[str, int] = field(default_factory=dict)
    protocol_version: str | None = None
    seed: int | None = None
    run: str | None = None
    selection: str | None = None
    trained_on: str | None = None
    synthetic: bool | None = None
    distance_recipe: DistanceRecipe | None = None

    @property
    def is_synthetic(self) -> bool:
        """Whether the dump comes from synthetic data: its ``synthetic`` attribute, else
        the word "synthetic" in its model name or description (older dumps)."""
        if self.synthetic is not None:
            return self.synthetic
        return mentions_synthetic(self.model, self.description)


def mentions_synthetic(*texts: str) -> bool:
    """True when any text contains the word "synthetic" (any case): how dumps written
    before the ``synthetic`` attribute said so."""
    return any("synthetic" in (text or "").lower() for text in texts)
