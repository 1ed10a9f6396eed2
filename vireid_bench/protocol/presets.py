"""Protocol presets: the evaluation settings as data, loaded from TOML files.

A preset says which images are removed from a query's gallery. Its rule is a list of
*clauses*; a gallery image is excluded when **any** clause matches it. A clause constrains
up to three relations between the query ``q`` and the gallery image ``g``, each to
``"same"`` or ``"different"`` (unconstrained when absent):

* ``camera``: ``cam_g == cam_q`` (with ``colocated_cameras``, cameras the dataset declares
  co-located count as the same camera);
* ``identity``: ``pid_g == pid_q``;
* ``modality``: ``mod_g == mod_q``.

A clause matches when all of its constrained relations hold. The query image itself is
never in its own gallery, whatever the clauses say. Presets live in ``protocols/*.toml``
(installed as ``vireid_bench.protocols``); ``vireid-bench protocols`` lists them.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import MODALITY_CODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


RELATIONS = ("camera", "identity", "modality")
RELATION_CODES = {"any": 0, "same": 1, "different": 2}
CMC_CONVENTIONS = ("image", "identity")
GALLERY_MODALITIES = ("opposite", "same", "mixed")
PRESET_ORDER = ("mix", "mix-cam", "mix-cam-id", "mix-id", "mix-p", "cross", "uni")


@dataclass(frozen=True)
class Clause:
    """One exclusion clause: each relation is ``"same"``, ``"different"`` or ``"any"``."""

    camera: str = "any"
    identity: str = "any"
    modality: str = "any"

    def codes(self) -> tuple[int, int, int]:
        """Return the (camera, identity, modality) relation codes used by the kernel."""
        return (
            RELATION_CODES[self.camera],
            RELATION_CODES[self.identity],
            RELATION_CODES[self.modality],
        )

    def describe(self) -> str:
        """Return the clause in words, e.g. ``"same camera and same identity"``."""
        parts = [f"{value} {name}" for name, value in self._items() if value != "any"]
        return " and ".join(parts)

    def _items(self) -> list[tuple[str, str]]:
        return [("camera", self.camera), ("identity", self.identity), ("modality", self.modality)]


@dataclass(frozen=True)
class Preset:
    """An evaluation setting.

    Attributes:
        name: canonical name, used as CLI token, dict key and column value.
        description: one sentence shown by ``vireid-bench protocols``.
        paper: where the setting is defined.
        clauses: the exclusion clauses (any match excludes).
        query_modalities: the query modalities it reports (``"infrared"``, ``"visible"``).
        gallery_modality: ``"opposite"``, ``"same"`` or ``"mixed"``, as reported.
        cmc: ``"image"``, ``"identity"`` or ``"dataset"`` (the dataset convention's default).
        colocated_cameras: whether the camera relation treats co-located cameras as one.
        requires_multiple_cameras_per_modality: not applicable when a query modality has
            a single camera (Mix-Cam, Mix-Cam-ID on RegDB and LLCM).
    """

    name: str
    description: str
    paper: str
    clauses: tuple[Clause, ...]
    query_modalities: tuple[str, ...]
    gallery_modality: str
    cmc: str = "dataset"
    colocated_cameras: bool = False
    requires_multiple_cameras_per_modality: bool = False

    def clause_codes(self) -> np.ndarray:
        """Return the clauses as int8 [n_clauses, 3] (camera, identity, modality codes)."""
        codes = np.zeros((len(self.clauses), 3), dtype=np.int8)
        for row, clause in enumerate(self.clauses):
            codes[row] = clause.codes()
        return codes

    def describe_exclusion(self) -> str:
        """Return the exclusion rule in words."""
        if not self.clauses:
            return "only the query image itself"
        return "; or ".join(clause.describe() for clause in self.clauses)


def _parse_clause(source: str, index: int, raw: object) -> Clause:
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"{source}: exclude[{index}]: must be a table")
    unknown = sorted(set(raw) - set(RELATIONS))
    if unknown:
        raise ProtocolError(
            f"{source}: exclude[{index}]: unknown key {unknown[0]!r} (valid: {list(RELATIONS)})"
        )
    values = {}
    for name in RELATIONS:
        value = raw.get(name, "any")
        if value not in RELATION_CODES:
            raise ProtocolError(
                f"{source}: exclude[{index}].{name}: {value!r} is not 'same' or 'different'"
            )
        values[name] = value
    clause = Clause(**values)
    if clause.codes() == (0, 0, 0):
        raise ProtocolError(
            f"{source}: exclude[{index}]: a clause must constrain camera, identity or modality"
        )
    return clause


def parse_preset(source: str, data: Mapping[str, object]) -> Preset:
    """Build a :class:`Preset` from a parsed TOML table; raise ProtocolError when malformed.

    Args:
        source: the file name, used in error messages.
        data: the TOML document as a mapping.
    """
    allowed = {
        "name",
        "description",
        "paper",
        "exclude",
        "query_modalities",
        "gallery_modality",
        "cmc",
        "colocated_cameras",
        "requires_multiple_cameras_per_modality",
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProtocolError(f"{source}: unknown key {unknown[0]!r}")
    for key in ("name", "description", "query_modalities", "gallery_modality"):
        if key not in data:
            raise ProtocolError(f"{source}: {key}: missing")
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{source}: name: must be a non-empty string")
    query_modalities = data["query_modalities"]
    if (
        not isinstance(query_modalities, list)
        or not query_modalities
        or any(m not in MODALITY_CODES for m in query_modalities)
    ):
        raise ProtocolError(
            f"{source}: query_modalities: must list some of {sorted(MODALITY_CODES)}"
        )
    gallery_modality = data["gallery_modality"]
    if gallery_modality not in GALLERY_MODALITIES:
        raise ProtocolError(f"{source}: gallery_modality: must be one of {GALLERY_MODALITIES}")
    cmc = data.get("cmc", "dataset")
    if cmc not in (*CMC_CONVENTIONS, "dataset"):
        raise ProtocolError(f"{source}: cmc: must be 'image', 'identity' or 'dataset'")
    raw_clauses = data.get("exclude", [])
    if not isinstance(raw_clauses, list):
        raise ProtocolError(f"{source}: exclude: must be an array of tables")
    clauses = tuple(_parse_clause(source, i, raw) for i, raw in enumerate(raw_clauses))
    return Preset(
        name=name,
        description=str(data["description"]),
        paper=str(data.get("paper", "")),
        clauses=clauses,
        query_modalities=tuple(query_modalities),
        gallery_modality=gallery_modality,
        cmc=cmc,
        colocated_cameras=bool(data.get("colocated_cameras", False)),
        requires_multiple_cameras_per_modality=bool(
            data.get("requires_multiple_cameras_per_modality", False)
        ),
    )


def load_preset_file(path: str) -> Preset:
    """Read one preset TOML file from disk.

    The file must be a regular file (a FIFO is refused without waiting for a writer, a
    directory without reading it) holding UTF-8 TOML, and its ``name`` must not be a
    builtin setting's name.

    Raises:
        ProtocolError: one line naming ``path``.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ProtocolError(f"{path}: is {_file_kind(mode)}, not a regular file")
        raw = b"".join(iter(lambda: os.read(fd, 1 << 16), b""))
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot be read ({exc.strerror})") from exc
    finally:
        os.close(fd)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            f"{path}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "TOML files are UTF-8"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{path}: not valid TOML ({exc})") from exc
    preset = parse_preset(path, data)
    if preset.name in builtin_presets() or preset.name == "all":
        raise ProtocolError(
            f"{path}: name: reuses the built-in name {preset.name!r}; rename it"
        )
    return preset


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "a special file"


@cache
def builtin_presets() -> dict[str, Preset]:
    """Return the presets shipped with the package, keyed by name, in the paper's order."""
    found: dict[str, Preset] = {}
    for entry in resources.files("vireid_bench.protocols").iterdir():
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        preset = parse_preset(entry.name, data)
        if preset.name in found:
            raise ProtocolError(f"{entry.name}: preset {preset.name!r} defined twice")
        found[preset.name] = preset
    order = {name: i for i, name in enumerate(PRESET_ORDER)}
    return dict(sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
