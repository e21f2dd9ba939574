"""The engine's output file names, and the one way a file is written: atomically.

A file is written under a temporary name beside its target (same suffixes, so writers that choose the format by
the extension still work) and renamed over the target when complete: readers see the old file or the new one,
never half a file, and an interrupted write leaves no partial output. The result gets an ordinary file's
permissions (``0666`` less the umask; ``tempfile`` alone would make it private).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# volume files the engine reads (SimpleITK), compound suffixes before their tails
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# smartnet analyze, one folder per case
REPORT_FILE = "report.json"
SEGMENTATION_FILE = "segmentation.seg.nrrd"
ACTIVATION_FILE = "activation.nrrd"
LABELS_NIFTI_FILE = "labels.nii.gz"
DICOM_SEG_FILE = "segmentation.dcm"
REPORT_PNG_FILE = "report.png"
REPORT_HTML_FILE = "report.html"
# smartnet analyze with several inputs, in the output folder
SUMMARY_CSV_FILE = "summary.csv"
SUMMARY_JSON_FILE = "summary.json"
# smartnet compare
COMPARISON_FILE = "comparison.json"
COMPARISON_FIGURE_FILE = "comparison.png"
ALIGNED_SEGMENTATION_FILE = "followup-in-baseline.seg.nrrd"


def image_stem(name: str) -> str:
    """A volume file's name without its image suffix (``"a.nii.gz"`` -> ``"a"``, ``"a.seg.nrrd"`` -> ``"a.seg"``)."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def activation_file(target: str, primary: str) -> tuple[str, str]:
    """The ``files`` key and the file name of the activation map of ``target`` (``primary``: the model's first
    output, whose map is ``activation.nrrd``)."""
    if target == primary:
        return "activation", ACTIVATION_FILE
    return f"activation_{target}", f"activation-{target}.nrrd"


def _ordinary_permissions(path: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it replaces ``path`` when the block succeeds and is
    removed when it fails.

    Args:
        path: the file to write (its folder is made if missing).

    Yields:
        The temporary file's path (it exists, empty), with ``path``'s suffixes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        _ordinary_permissions(tmp)
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_default(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists (without importing numpy), paths as strings."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json_atomic(path: str | Path, data: Any, indent: int = 2,
                      default: Callable[[Any], Any] | None = json_default) -> Path:
    """Write ``data`` as JSON (a final newline) to ``path`` atomically; ``default`` as for :func:`json.dumps`."""
    return write_text_atomic(path, json.dumps(data, indent=indent, default=default) + "\n")
