"""CI checks every folder of stored dumps: ``vireid-bench check`` is not recursive."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checked_folders(script: str) -> set[str]:
    return {m.rstrip("/") for m in re.findall(r"^vireid-bench check (\S+)\s*$", script, re.M)}


def test_checked_folders_parser():
    script = "set -e\nvireid-bench check feature_dumps/\n# vireid-bench check x/\n"
    assert checked_folders(script) == {"feature_dumps"}


def test_every_folder_of_stored_dumps_is_checked_by_ci():
    folders = {
        path.parent.relative_to(ROOT).as_posix() for path in (ROOT / "feature_dumps").rglob("*.h5")
    }
    assert folders, "no stored dumps found"
    missing = folders - checked_folders((ROOT / ".ci" / "run").read_text())
    assert not missing, f".ci/run does not check {sorted(missing)}"
    for folder in folders:
        assert (ROOT / folder / "expected").is_dir(), f"{folder}: no expected/ results"
