"""Visual report of one analysis: ``report.png`` and a self-contained ``report.html``.

The page shows the key slices (largest finding of each subtype, or the most suspicious slices when there is
none) in a brain window with subtype contours and the activation overlay, a 3D view rendered offscreen with VTK
(:mod:`SMARTNetLib.report.rendering3d`), and the numbers of ``report.json``. Works without a display; when no offscreen
OpenGL is available the page says so in place of the 3D view.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.image import imsave

from SMARTNetLib.client.analysis_results import clinical_rows
from SMARTNetLib.contracts.classes import classes_for
from SMARTNetLib.contracts.files import REPORT_HTML_FILE, REPORT_PNG_FILE, write_bytes_atomic
from SMARTNetLib.report.figures import NOTICE, compose_page, key_slices, reorient_lps, total_volume_ml
from SMARTNetLib.report.rendering3d import render_3d

logger = logging.getLogger(__name__)

RENDER_SIZE = (800, 800)


def write_visual_report(
    ct: sitk.Image,
    labels: sitk.Image,
    activation: sitk.Image | None,
    report: dict,
    out_dir: Path,
    *,
    warnings: list[str] | None = None,
    render3d: bool = True,
) -> dict[str, Path]:
    """Write ``report.png`` and ``report.html`` into ``out_dir`` (atomically) and return their paths.

    ``ct`` in HU, ``labels`` with the class label values of ``report["classes"]``, ``activation`` in [0, 1] on
    the same grid (or None), ``report`` as in report.json. Problems that do not stop the report (no offscreen
    OpenGL for the 3D view) are appended to ``warnings`` when a list is given, and logged. ``render3d=False``
    skips the 3D view.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = classes_for(report.get("classes") or [])
    volumes = reorient_lps(ct, labels, activation)
    keys = key_slices(volumes, classes, report, ct)
    if render3d:
        try:
            result = render_3d(ct, labels, activation, classes, RENDER_SIZE)
            render, note = result.image, result.note
        except Exception as error:  # the 3D view is an extra: never lose the report for it
            logger.debug("3D rendering failed", exc_info=True)
            render, note = None, f"3D view unavailable: {type(error).__name__}: {error}"
    else:
        render, note = None, "3D view not requested"
    if note and render3d:
        logger.warning(note)
        if warnings is not None:
            warnings.append(note)
    page, regions = compose_page(volumes, keys, classes, report, render, note)
    png = _png_bytes(page)
    images = {"slices": _png_bytes(_crop(page, regions["slices"])) if "slices" in regions else None,
              "render": _png_bytes(render) if render is not None else None}
    document = _html(report, classes, images, note)
    paths = {"report_png": out_dir / REPORT_PNG_FILE, "report_html": out_dir / REPORT_HTML_FILE}
    for path, data in zip(paths.values(), (png, document.encode("utf-8")), strict=True):
        write_bytes_atomic(path, data)
    logger.debug("visual report written in %.2f s", time.perf_counter() - t0)
    return paths


def _crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, bottom, left, right = box
    return image[top:bottom, left:right]


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    imsave(buffer, image, format="png")
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _num(value, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1400px;color:#222}
h1{font-size:1.6em;margin:0 0 4px} .sub{color:#666;margin:0 0 12px}
.notice{background:#b00020;color:#fff;font-weight:bold;padding:8px 12px;margin:12px 0;font-size:1.1em}
.prob{font-size:1.4em;font-weight:bold} table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 10px;text-align:left} th{background:#eee}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:middle}
.warn{color:#8a4b00} img{max-width:100%;height:auto} .row{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
.note{background:#eee;padding:40px;color:#444;width:500px} figure{margin:0} figcaption{color:#666;font-size:.9em}
"""


def _html(report: dict, classes, images: dict[str, bytes | None], note: str | None) -> str:
    """A single HTML page with everything inline (CSS, images as data URIs): no external file or network."""
    e = html.escape
    model = report.get("model", {})
    findings = report.get("findings", {})
    rows = []
    for c in classes:
        f = findings.get(c.name, {})
        colour = "#" + "".join(f"{round(255 * v):02x}" for v in c.color)
        rows.append(f"<tr><td><span class='swatch' style='background:{colour}'></span>{e(c.display_name)} "
                    f"({e(c.abbreviation)})</td><td>{_num(f.get('probability'), 2)}</td>"
                    f"<td>{_num(f.get('volume_ml'), 1)}</td></tr>")
    total = total_volume_ml(report)
    rows.append(f"<tr><th>Total hemorrhage</th><th>{_num(report.get('ich_probability'), 2)}</th>"
                f"<th>{_num(total, 1)}</th></tr>")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>SMART-Net report: {e(str(report.get('input', '')))}</title><style>{_CSS}</style></head><body>",
        "<h1>SMART-Net intracranial hemorrhage analysis</h1>",
        f"<p class='sub'>{e(str(report.get('input', '')))}</p>",
    ]
    if model.get("synthetic_only"):
        parts.append(f"<div class='notice'>{e(NOTICE)}</div>")
    parts.append(f"<p class='prob'>ICH probability {_num(report.get('ich_probability'), 2)}</p>")
    if images.get("slices"):
        parts.append(f"<figure><img alt='key slices' src='{_data_uri(images['slices'])}'><figcaption>Key slices, "
                     "brain window W80 L40, radiological view (patient's right on the left); contours: "
                     "segmentation; overlay: activation.</figcaption></figure>")
    parts.append("<div class='row'>")
    if images.get("render"):
        parts.append(f"<figure><img alt='3D view' width='560' src='{_data_uri(images['render'])}'><figcaption>3D, "
                     "viewed from anterior-left-superior: skull (&ge;300 HU), hemorrhage surfaces; activation "
                     "&ge;0.5 yellow, &ge;0.8 red.</figcaption></figure>")
    else:
        parts.append(f"<div class='note'>{e(note or '3D view unavailable')}</div>")
    parts.append("<div><table><tr><th>Finding</th><th>Probability</th><th>Volume (mL)</th></tr>" + "".join(rows)
                 + "</table>")
    clinical = clinical_rows(report)
    if clinical:
        parts.append("<h3>Clinical measures</h3><table>" + "".join(
            f"<tr><td>{e(name)}</td><td>{e(value)}</td><td>{e(volume)}</td></tr>" for name, value, volume in clinical)
            + "</table>")
    parts.append(f"<p>Model: {e(str(model.get('name', '?')))} {e(str(model.get('version', '')))}</p>")
    if model.get("description"):
        parts.append(f"<p>{e(str(model['description']))}</p>")
    if report.get("device"):
        parts.append(f"<p>Device: {e(str(report['device']))}</p>")
    warnings = list(report.get("warnings") or [])
    if warnings:
        parts.append("<h3>Warnings</h3><ul class='warn'>" + "".join(f"<li>{e(str(w))}</li>" for w in warnings)
                     + "</ul>")
    parts.append("</div></div></body></html>")
    return "\n".join(parts)
