"""Visual report: report.png / report.html on tiny synthetic heads, 3D rendering offscreen, headless fallback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.colors import rgb_to_hsv
from matplotlib.image import imread

from SMARTNetLib.contracts.classes import SUBTYPE_NAMES, get_class
from SMARTNetLib.report import rendering3d
from SMARTNetLib.report.figures import NOTICE, key_slices, reorient_lps
from SMARTNetLib.report.visual_report import write_visual_report

SHAPE = (16, 72, 72)  # k, j, i
SPACING = (3.0, 3.0, 5.0)  # i, j, k (mm)


def rotation(axis: int, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [n for n in range(3) if n != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def make_head(direction=None, blob_lps=(30.0, -30.0, 0.0), label_value=2, blob_radius=15.0):
    """CT (skull ellipse shell ~1000 HU, brain 35 HU, blob 65 HU), labels (blob), gaussian activation.

    The head is centred on the LPS origin; ``blob_lps`` is the blob centre in LPS mm (+x left, +y posterior).
    """
    nk, nj, ni = SHAPE
    reference = sitk.Image(ni, nj, nk, sitk.sitkInt16)
    reference.SetSpacing(SPACING)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    reference.SetDirection(d.ravel().tolist())
    reference.SetOrigin((-(d @ (np.array(SPACING) * (np.array([ni, nj, nk]) - 1) / 2))).tolist())
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float) * SPACING
    x, y, z = np.moveaxis(index @ d.T + reference.GetOrigin(), -1, 0)
    r = np.sqrt((x / 75) ** 2 + (y / 95) ** 2 + (z / 90) ** 2)
    ct = np.full(SHAPE, -1000, np.int16)
    ct[r < 1.0] = 1200
    ct[r < 0.88] = 35
    distance = np.sqrt((x - blob_lps[0]) ** 2 + (y - blob_lps[1]) ** 2 + (z - blob_lps[2]) ** 2)
    labels = np.zeros(SHAPE, np.uint8)
    labels[distance < blob_radius] = label_value
    ct[distance < blob_radius] = 65
    activation = np.exp(-(distance**2) / (2 * 14.0**2)).astype(np.float32)

    def image(array):
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(reference)
        return out

    return image(ct), image(labels), image(activation)


def make_report(labels: sitk.Image, synthetic_only=True, **extra) -> dict:
    array = sitk.GetArrayViewFromImage(labels)
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    findings = {}
    for n, name in enumerate(SUBTYPE_NAMES):
        count = int((array == n + 1).sum())
        findings[name] = {"probability": 0.9 if count else 0.05, "volume_ml": count * voxel_ml,
                          "label_value": n + 1, "largest_slice": None, "centroid_lps": None}
    report = {
        "input": "synthetic-head.nii.gz",
        "model": {"name": "test-model", "version": "9.8.7", "description": "tiny", "synthetic_only": synthetic_only},
        "device": "cpu",
        "ich_probability": 0.93 if array.any() else 0.04,
        "classes": list(SUBTYPE_NAMES),
        "findings": findings,
        "total_volume_ml": sum(f["volume_ml"] for f in findings.values()),
        "slice_probabilities": [0.1] * SHAPE[0],
        "warnings": ["Slice thickness 5 mm is larger than the training data."],
    }
    report.update(extra)
    return report


def colour_pixels(rgb: np.ndarray, colour, hue_tol=0.03, min_sat=0.45, min_val=0.25) -> np.ndarray:
    """Mask of pixels with the hue of ``colour`` (shading changes brightness, not hue)."""
    hsv = rgb_to_hsv(np.clip(rgb[..., :3].astype(float) / (255.0 if rgb.dtype == np.uint8 else 1.0), 0, 1))
    target = rgb_to_hsv(np.array(colour, dtype=float))
    dh = np.abs(hsv[..., 0] - target[0])
    dh = np.minimum(dh, 1 - dh)
    return (dh < hue_tol) & (hsv[..., 1] > min_sat) & (hsv[..., 2] > min_val)


def assert_not_blank(png: Path) -> np.ndarray:
    image = imread(png)[..., :3]
    assert image.shape[0] > 500 and image.shape[1] > 1000
    assert image.std() > 0.1
    assert len(np.unique((image * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 100
    return image


def assert_self_contained(html_path: Path) -> str:
    text = html_path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    references = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]*)['"]""", text)
    assert references, "expected embedded images"
    assert all(ref.startswith("data:image/png;base64,") for ref in references), references
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "<script" not in text
    return text


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    """No display: the 3D child process inherits this environment."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def test_report_with_finding(tmp_path):
    ct, labels, activation = make_head()
    report = make_report(labels)
    warnings: list[str] = []
    paths = write_visual_report(ct, labels, activation, report, tmp_path / "out", warnings=warnings)

    assert set(paths) == {"report_png", "report_html"}
    assert paths["report_png"] == tmp_path / "out" / "report.png" and paths["report_png"].is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.png"]  # no temp left
    assert warnings == []  # the 3D view was rendered
    image = assert_not_blank(paths["report_png"])
    iph = get_class("intraparenchymal").color
    assert colour_pixels(image, iph, min_sat=0.8).sum() > 30  # contour, legend (pure colour)

    text = assert_self_contained(paths["report_html"])
    assert NOTICE in text
    assert "test-model" in text and "9.8.7" in text
    assert "0.93" in text  # ICH probability
    assert f"{report['findings']['intraparenchymal']['volume_ml']:.1f}" in text
    assert "Slice thickness 5 mm" in text
    assert text.count("data:image/png;base64,") == 2  # key slices and 3D view
    assert "3D view unavailable" not in text


def test_render_3d_not_blank_and_not_mirrored():
    # Blue IVH blob on the patient's right, anterior: seen from anterior-left-superior it lies left of centre.
    ct, labels, _ = make_head(blob_lps=(-40.0, -30.0, 0.0), label_value=3, blob_radius=14.0)
    ivh = get_class("intraventricular")
    result = rendering3d.render_3d(ct, labels, None, [ivh], size=(300, 300))
    assert result.image is not None, result.note
    image = result.image
    assert image.shape == (300, 300, 3) and image.dtype == np.uint8
    background = image[2, 2].astype(int)
    assert np.allclose(background, np.array(rendering3d.BACKGROUND) * 255, atol=3)
    differs = np.abs(image.astype(int) - background).sum(axis=-1) > 20
    assert differs.mean() > 0.2  # the skull covers a good part of the view
    blue = colour_pixels(image, ivh.color)
    assert blue.sum() > 50
    assert np.nonzero(blue)[1].mean() < 150  # viewer's left: the patient's right side faces left from this view


def test_oblique_direction(tmp_path):
    # Coronal-like acquisition (i -> right, j -> superior, k -> posterior), tilted 15 degrees.
    direction = rotation(0, 15) @ np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    ct, labels, activation = make_head(direction=direction, blob_lps=(-30.0, -35.0, 10.0), label_value=5)
    volumes = reorient_lps(ct, labels, activation)
    assert np.allclose(np.array(volumes.image.GetDirection()).reshape(3, 3), rotation(0, 15), atol=1e-6)
    # Radiological display of the reoriented arrays: patient's right (blob) on the image left, anterior on top.
    blob = np.nonzero(volumes.labels)
    assert blob[2].mean() < volumes.labels.shape[2] / 2 and blob[1].mean() < volumes.labels.shape[1] / 2
    report = make_report(labels)
    keys = key_slices(volumes, [get_class(n) for n in SUBTYPE_NAMES], report, ct)
    assert len(keys) == 1 and keys[0].title.startswith("SDH")
    assert (volumes.labels[keys[0].k] == 5).sum() == (volumes.labels == 5).sum(axis=(1, 2)).max()

    paths = write_visual_report(ct, labels, activation, report, tmp_path)
    image = assert_not_blank(paths["report_png"])
    assert colour_pixels(image, get_class("subdural").color, hue_tol=0.02, min_sat=0.35).sum() > 30
    assert_self_contained(paths["report_html"])


def test_negative_case_shows_suspicious_slices(tmp_path):
    ct, labels, _ = make_head()
    empty = sitk.Image(labels.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(labels)
    probabilities = [0.01] * SHAPE[0]
    probabilities[4], probabilities[11] = 0.4, 0.3
    report = make_report(empty, synthetic_only=False, slice_probabilities=probabilities)
    volumes = reorient_lps(ct, empty, None)
    keys = key_slices(volumes, [get_class(n) for n in SUBTYPE_NAMES], report, ct)
    assert [k.k for k in keys] == [4, 11]  # identity direction: same k axis; p = 0.01 is not suspicious
    assert keys[0].title == "slice 4: p = 0.40"

    paths = write_visual_report(ct, empty, None, report, tmp_path)
    assert_not_blank(paths["report_png"])
    text = assert_self_contained(paths["report_html"])
    assert NOTICE not in text  # the model card does not say synthetic only


def test_no_offscreen_opengl_still_writes_report(tmp_path, monkeypatch):
    # A render child that dies as VTK does when no OpenGL library can be loaded (segmentation fault).
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    monkeypatch.setattr(rendering3d, "CHILD_COMMAND", [sys.executable, "-c", crash])
    monkeypatch.setattr(rendering3d, "_working_backend", None)
    ct, labels, activation = make_head()
    warnings: list[str] = []
    paths = write_visual_report(ct, labels, activation, make_report(labels), tmp_path, warnings=warnings)
    assert len(warnings) == 1 and "3D view unavailable" in warnings[0]
    assert_not_blank(paths["report_png"])
    text = assert_self_contained(paths["report_html"])
    assert "3D view unavailable" in text
    assert text.count("data:image/png;base64,") == 1  # key slices only


def test_headless_process_without_display(tmp_path):
    """The whole report in a fresh process with no DISPLAY and no matplotlib backend chosen beforehand."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_visual_report import make_head, make_report
        from SMARTNetLib.report.visual_report import write_visual_report
        ct, labels, activation = make_head()
        warnings = []
        write_visual_report(ct, labels, activation, make_report(labels), Path(sys.argv[1]), warnings=warnings)
        assert not warnings, warnings
        import matplotlib
        print("backend", matplotlib.get_backend())
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert (tmp_path / "report.html").stat().st_size > 10_000
