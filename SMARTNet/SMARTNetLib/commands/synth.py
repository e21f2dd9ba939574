"""``smartnet synth``: write synthetic head CTs with hemorrhage labels and a MONAI-style datalist."""

from __future__ import annotations

import argparse
from pathlib import Path

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink

HELP = "write synthetic head CT cases (CT + label map) and a MONAI-style datalist.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, required=True, help="number of cases")
    parser.add_argument("--output-dir", required=True, help="folder for cases/ and datalist.json")
    parser.add_argument("--seed", type=int, default=0, help="data set seed; case i is reproducible alone")
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="small: ~96-128 px, <= 24 slices (fast); full: clinical grids (0.4-1 mm, 20-150 slices)")
    parser.add_argument("--host", choices=("procedural", "real", "mixed", "labelmap", "diverse"),
                        default="procedural",
                        help="procedural heads, the real InVesalius head (Debian invesalius-examples), both "
                             "(mixed), heads of the label-map-first generator (labelmap), or all three (diverse)")
    parser.add_argument("--validation-fraction", type=float, default=0.2, help="share of cases in 'validation'")
    parser.add_argument("--style", choices=("plain", "randomised"), default="plain",
                        help="plain: as releases up to 1.3.0; randomised: plus hard-negative mimics (dense falx, "
                             "tentorium, venous sinuses, calcifications), scanner variety and real-head warps")
    parser.add_argument("--workers", type=int, default=1, help="processes (the data set is the same for any number)")


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    from SMARTNetLib.synthetic import load_real_head, write_dataset

    if args.n < 1:
        raise SmartNetError("--n must be at least 1")
    if args.workers < 1:
        raise SmartNetError("--workers must be at least 1")
    if not 0.0 <= args.validation_fraction < 1.0:
        raise SmartNetError("--validation-fraction must be in [0, 1)")
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise SmartNetError("not a folder", out)
    if args.host in ("real", "mixed", "diverse") and load_real_head() is None:
        sink.warning("the real head (Debian package invesalius-examples) is not installed: using procedural heads")
    sink.progress("synthesize", 0.0, f"0/{args.n}")

    def progress(done: int, total: int, entry: dict) -> None:
        kinds = ", ".join(entry["subtypes"]) or "negative"
        sink.progress("synthesize", done / total, f"{done}/{total} ({kinds})")

    try:
        return write_dataset(out, args.n, seed=args.seed, size=args.size, host=args.host,
                             validation_fraction=args.validation_fraction, style=args.style,
                             workers=args.workers, progress=progress)
    except OSError as err:
        raise SmartNetError(f"cannot write: {err.strerror or err}", out) from err


def summarize(result: dict) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in result["subtype_counts"].items())
    return (f"wrote {result['cases']} cases ({result['negatives']} negative; {counts}) "
            f"to {result['output_dir']}; datalist: {result['datalist']}")
