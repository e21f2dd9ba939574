"""Midline shift and finding location measured against the truth of synthetic heads, and on the real head.

Procedural heads of the training generator with one intraparenchymal bleed each (the generator's mass effect
knows where it moves the septum: ``info["midline_shift_mm"]``, and the bleed's site: basal ganglia, thalamus,
lobar or cerebellum), measured on the truth label map so that the figures are the measurement's, not the model's;
and the real InVesalius head (normal, no bleed) under rigid motions, where the shift should stay the same:

    python benchmarks/midline_location.py --n 40 --seed 700

Writes ``benchmarks/results/midline-location.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.analysis.location import locate_findings
from SMARTNetLib.analysis.midline import find_head_anatomy
from SMARTNetLib.contracts.files import write_json_atomic
from SMARTNetLib.synthetic import make_case
from SMARTNetLib.synthetic.real_head import load_real_head

RESULTS = Path(__file__).resolve().parent / "results"
REGION_OF_SITE = {"basal_ganglia": "deep (basal ganglia)", "thalamus": "deep (thalamus)", "lobar": "lobar",
                  "cerebellum": "infratentorial"}
REAL_HEAD_MOTIONS = [(0, 0, 0), (0, 0, 8), (0, 0, -10), (6, 0, 5), (0, 5, -4), (-8, 3, 12)]


def synthetic_cases(n: int, seed: int) -> list[dict]:
    rows = []
    for case_seed in range(seed, seed + n):
        ct, label, info = make_case(case_seed, size="full", subtypes=["intraparenchymal"], host="procedural")
        anatomy = find_head_anatomy(ct)
        shift = anatomy.midline_shift()
        found = locate_findings(label, anatomy, 2, 3)
        site = info["bleeds"][0].get("site")
        region = found[0]["region"] if found else None
        rows.append({"seed": case_seed, "site": site, "slice_mm": ct.GetSpacing()[2],
                     "true_shift_mm": info["midline_shift_mm"], "measured_shift_mm": shift.get("signed_to_left_mm"),
                     "error_mm": None if not shift["measurable"] else
                     round(shift["signed_to_left_mm"] - info["midline_shift_mm"], 2),
                     "ideal_midline": shift.get("ideal_midline", {}).get("method"),
                     "region": region, "region_correct": region == REGION_OF_SITE.get(site)})
        print(rows[-1], flush=True)
    return rows


def real_head_cases() -> list[dict]:
    head = load_real_head()
    if head is None:
        return []
    centre = head.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in head.GetSize()])
    rows = []
    for motion in REAL_HEAD_MOTIONS:
        transform = sitk.Euler3DTransform(centre, *np.radians(motion), (3.0, -2.0, 1.0))
        shift = find_head_anatomy(sitk.Resample(head, head, transform, sitk.sitkLinear, -1024)).midline_shift()
        rows.append({"rotation_deg": list(motion), "measured_shift_mm": shift.get("signed_to_left_mm"),
                     "ideal_midline": shift.get("ideal_midline", {}).get("method")})
        print(rows[-1], flush=True)
    return rows


def summary(rows: list[dict], real: list[dict]) -> dict:
    errors = np.array([abs(r["error_mm"]) for r in rows if r["error_mm"] is not None])
    by_site = {}
    for site in REGION_OF_SITE:
        of_site = [r for r in rows if r["site"] == site]
        if of_site:
            site_errors = [abs(r["error_mm"]) for r in of_site if r["error_mm"] is not None]
            by_site[site] = {"cases": len(of_site), "region_accuracy": round(float(np.mean([r["region_correct"]
                                                                                     for r in of_site])), 3),
                             "shift_error_median_mm": round(float(np.median(site_errors)), 2) if site_errors
                             else None}
    shifts = [r["measured_shift_mm"] for r in real if r["measured_shift_mm"] is not None]
    return {"synthetic": {"cases": len(rows), "measurable": round(len(errors) / max(len(rows), 1), 3),
                          "shift_error_median_mm": round(float(np.median(errors)), 2) if errors.size else None,
                          "shift_error_p90_mm": round(float(np.percentile(errors, 90)), 2) if errors.size else None,
                          "within_1_5_mm": round(float(np.mean(errors <= 1.5)), 3) if errors.size else None,
                          "true_shift_max_mm": round(max(abs(r["true_shift_mm"]) for r in rows), 2),
                          "region_accuracy": round(float(np.mean([r["region_correct"] for r in rows])), 3),
                          "by_site": by_site},
            "real_head": {"motions": len(real), "measurable": len(shifts),
                          "shift_mm_range": [min(shifts), max(shifts)] if shifts else None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=700)
    parser.add_argument("--output", type=Path, default=RESULTS / "midline-location.json")
    args = parser.parse_args()
    start = time.time()
    rows, real = synthetic_cases(args.n, args.seed), real_head_cases()
    result = {"command": f"python benchmarks/midline_location.py --n {args.n} --seed {args.seed}",
              "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - start, 1),
              "summary": summary(rows, real), "cases": rows, "real_head": real}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output, result)
    print(result["summary"])


if __name__ == "__main__":
    main()
