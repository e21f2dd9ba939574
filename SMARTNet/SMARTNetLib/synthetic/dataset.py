"""One synthetic case (``make_case``) and a folder of cases with a MONAI-style datalist (``write_dataset``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.contracts.classes import SUBTYPE_NAMES, SUBTYPES, class_from_segment_name
from SMARTNetLib.contracts.files import atomic_path, write_json_atomic
from SMARTNetLib.synthetic.bleeds import plan_bleeds, random_subtypes, septum_shift_mm
from SMARTNetLib.synthetic.noise import SmoothNoise
from SMARTNetLib.synthetic.phantom import ProceduralHead
from SMARTNetLib.synthetic.randomisation import plan_mimics, randomise_scanner
from SMARTNetLib.synthetic.scanner import random_geometry, render_procedural

NEGATIVE_FRACTION = 0.4
HOSTS = ("procedural", "real", "mixed", "labelmap", "diverse")
DIVERSE_SHARES = {"real": 0.25, "procedural": 0.35, "labelmap": 0.4}  # host="diverse": heads per source
STYLES = ("plain", "randomised")


def label_volumes_ml(label: sitk.Image) -> dict[str, float]:
    """Volume (mL) of each subtype present in ``label``."""
    arr = sitk.GetArrayViewFromImage(label)
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    counts = np.bincount(arr.ravel(), minlength=6)
    return {c.name: round(float(counts[c.label_value]) * voxel_ml, 3) for c in SUBTYPES if counts[c.label_value]}


def _case_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 7919]))


def _draw_source(rng: np.random.Generator, host: str) -> str:
    """The source a case of ``host`` is drawn from: the first draw of the case's stream for ``mixed`` and
    ``diverse``."""
    if host not in HOSTS:
        raise ValueError(f"host must be one of {HOSTS}, not {host!r}")
    if host == "mixed":
        return "real" if rng.random() < 0.3 else "procedural"
    if host == "diverse":
        return str(rng.choice(list(DIVERSE_SHARES), p=list(DIVERSE_SHARES.values())))
    return host


def case_source(seed: int, host: str) -> str:
    """The source ``make_case(seed, host=host)`` draws its head from, without making it (``real`` falls back to
    ``procedural`` when the real head is not installed): a script that wants some sources only skips the others."""
    return _draw_source(_case_rng(seed), host)


def _choose_subtypes(rng: np.random.Generator, subtypes: list[str] | None) -> list[str]:
    if subtypes is not None:
        subtypes = [class_from_segment_name(s) or s for s in subtypes]  # also "SDH", "subdural hematoma"
        bad = [s for s in subtypes if s not in SUBTYPE_NAMES]
        if bad:
            raise ValueError(f"unknown subtypes {bad}; known: {', '.join(SUBTYPE_NAMES)}")
        return list(subtypes)
    return [] if rng.random() < NEGATIVE_FRACTION else random_subtypes(rng)


def make_case(seed: int, size: str = "small", subtypes: list[str] | None = None,
              host: str = "procedural", style: str = "plain") -> tuple[sitk.Image, sitk.Image, dict]:
    """Make one synthetic case.

    ``subtypes``: None = random (about 40% negatives), ``[]`` = a negative (confounders only), or a list
    of subtype names (repeats = several bleeds of that subtype). ``host``: ``procedural``, ``real``
    (the InVesalius head; falls back to procedural when absent), ``mixed`` (those two, random per seed),
    ``labelmap`` (:mod:`.labelmap_heads`, a generator written apart from this one, label map first; its own
    scanner model, so ``style`` does not apply) or ``diverse`` (the three, :data:`DIVERSE_SHARES`).
    ``style``: ``plain`` (releases up to 1.3.0) or ``randomised`` (:mod:`.randomisation`: the same anatomy and
    bleeds for the same seed, plus hard-negative mimics, scanner variety and, in the real head, warps).
    Returns the CT (int16 HU), its label map (uint8, label values of ``SMARTNetLib.contracts.classes``, same
    geometry) and a description (subtypes, volume_ml, host, scanner, bleeds).

    >>> ct, label, info = make_case(0, subtypes=["subdural"])
    >>> info["subtypes"]
    ['subdural']
    """
    rng = _case_rng(seed)
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    # randomisation draws from its own stream, so a seed's anatomy and bleeds are the same in both styles
    extra = np.random.default_rng(np.random.SeedSequence([int(seed), 31337])) if style == "randomised" else None
    host = _draw_source(rng, host)
    if host == "labelmap":
        from SMARTNetLib.synthetic.labelmap_heads import make_labelmap_case

        wanted = _choose_subtypes(rng, subtypes)
        ct, label, info = make_labelmap_case(int(seed), size=size, subtypes=wanted)
        return _finish(ct, label, info, wanted)
    wanted = _choose_subtypes(rng, subtypes)
    if host == "real":
        from SMARTNetLib.synthetic.real_head import make_real_case

        result = make_real_case(rng, size, wanted, extra)
        if result is not None:
            ct, label, info = result
            return _finish(ct, label, info, wanted)
        host = "procedural"
    head = ProceduralHead(rng)
    geom = random_geometry(rng, size, head_top=float(head.axes[2] + head.skull + head.scalp))
    gravity = geom.pose.T @ np.array([0.0, 1.0, 0.0])  # supine: blood settles posteriorly (scanner +y)
    bleeds = plan_bleeds(rng, head, wanted, gravity)
    texture = SmoothNoise(rng, scale_mm=6.0, extent_mm=240)
    mimics = plan_mimics(extra) if extra is not None else []
    hu, lab, render = render_procedural(head, geom, bleeds, rng, texture, mimics=mimics)
    if extra is not None:
        render["randomised"] = {"mimics": [m.kind for m in mimics], **randomise_scanner(hu, geom.spacing, extra)}
    ref = geom.reference_image()
    ct = sitk.GetImageFromArray(np.clip(np.rint(hu), -1024, 3071).astype(np.int16))
    ct.CopyInformation(ref)
    label = sitk.GetImageFromArray(lab)
    label.CopyInformation(ref)
    confounders = ["falx", "tentorium", "skull-base beam hardening", "bone partial volume"]
    if head.calcs:
        confounders.append("choroid plexus / pineal calcification")
    if head.hu.falx_calcified:
        confounders.append("calcified falx")
    info = {"host": "procedural", "scanner": geom.describe(), "bleeds": [b.describe() for b in bleeds],
            "confounders": confounders, "atrophy": round(head.atrophy, 2),
            "midline_shift_mm": round(septum_shift_mm(bleeds, head.midline_x), 2), **render}
    return _finish(ct, label, info, wanted)


def _finish(ct: sitk.Image, label: sitk.Image, info: dict, wanted: list[str]) -> tuple[sitk.Image, sitk.Image, dict]:
    volumes = label_volumes_ml(label)
    info = {"subtypes": sorted(volumes, key=SUBTYPE_NAMES.index), "volume_ml": volumes,
            "requested_subtypes": sorted(set(wanted), key=SUBTYPE_NAMES.index), **info}
    return ct, label, info


def _write_image(image: sitk.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def write_dataset(output_dir: str | Path, n: int, seed: int = 0, size: str = "small", host: str = "procedural",
                  validation_fraction: float = 0.2, style: str = "plain", workers: int = 1,
                  progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Write ``n`` cases under ``output_dir/cases`` and ``output_dir/datalist.json``; returns a summary.

    Case ``i`` is ``make_case(seed * 1_000_003 + i, ...)``, so any case can be remade alone, and the data set is
    the same whatever the number of ``workers`` (processes). Every ``round(1 / validation_fraction)``-th case
    goes to ``validation``.
    """
    out = Path(output_dir)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    every = max(2, int(round(1 / validation_fraction))) if validation_fraction > 0 else 0
    # "synthetic" marks models trained on it as synthetic-only; "classes" keeps subtype labels even for a
    # set whose only bleeds are epidural (label value 1, which alone would read as a binary mask).
    datalist: dict = {"synthetic": True, "classes": "subtypes", "style": style, "training": [], "validation": []}
    jobs = [(out, i, case_seed_for(seed, i), size, host, style) for i in range(n)]
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        entries = pool.imap(_write_case, jobs)
    else:
        pool, entries = None, map(_write_case, jobs)
    try:
        for i, entry in enumerate(entries):
            datalist["validation" if every and (i % every == every - 1) else "training"].append(entry)
            if progress:
                progress(i + 1, n, entry)
    finally:
        if pool is not None:
            pool.terminate()
    write_json_atomic(out / "datalist.json", datalist, indent=1)
    entries = datalist["training"] + datalist["validation"]
    counts = {s: sum(s in e["subtypes"] for e in entries) for s in SUBTYPE_NAMES}
    return {"output_dir": str(out), "datalist": str(out / "datalist.json"), "cases": n,
            "training": len(datalist["training"]), "validation": len(datalist["validation"]),
            "negatives": sum(not e["subtypes"] for e in entries), "subtype_counts": counts,
            "hosts": {h: sum(e["host"] == h for e in entries) for h in ("procedural", "real", "labelmap")}}


def _write_case(job: tuple) -> dict:
    """Make case ``i`` and write its CT and label (one job of :func:`write_dataset`); returns its datalist entry."""
    out, i, case_seed, size, host, style = job
    ct, label, info = make_case(case_seed, size=size, host=host, style=style)
    name = f"case_{i:05d}"
    _write_image(ct, out / "cases" / f"{name}_ct.nii.gz")
    _write_image(label, out / "cases" / f"{name}_label.nii.gz")
    return {"image": f"cases/{name}_ct.nii.gz", "label": f"cases/{name}_label.nii.gz",
            "subtypes": info["subtypes"], "volume_ml": info["volume_ml"], "host": info["host"],
            "seed": case_seed, "size": [int(s) for s in ct.GetSize()],
            "spacing": [round(float(s), 4) for s in ct.GetSpacing()]}


def case_seed_for(seed: int, index: int) -> int:
    """Seed of case ``index`` in a data set made with ``seed``."""
    return int(seed) * 1_000_003 + int(index)
