"""``smartnet embed``: t-SNE of a model's per-slice or per-volume features, coloured by label."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import EventSink, StageProgress

HELP = "plot a t-SNE of a model's slice or volume features over a datalist (two models side by side)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datalist", required=True, type=Path, help="MONAI-style datalist JSON")
    parser.add_argument("--model", action="append", required=True,
                        help="model name or folder; give it twice to compare two models (e.g. before/after)")
    parser.add_argument("--output", "-o", required=True, type=Path, help="PNG to write (coordinates go beside it)")
    parser.add_argument("--features", choices=("slice", "volume"), default="volume")
    parser.add_argument("--split", choices=("training", "validation", "all"), default="all")
    parser.add_argument("--max-slices", type=int, default=40, help="slices per volume with --features slice")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    from SMARTNetLib.analysis.embedding import collect, plot, tsne
    from SMARTNetLib.analysis.inference import Analyzer, resolve_device
    from SMARTNetLib.io.volume import read_ct
    from SMARTNetLib.model.store import load_model, resolve_model
    from SMARTNetLib.training.datalist import load_datalist, read_label

    if len(args.model) > 2:
        raise SmartNetError("--model can be given at most twice")
    if args.output.suffix.lower() != ".png":
        raise SmartNetError("the output must be a .png file", args.output)
    datalist = load_datalist(args.datalist, val_split=0.0)
    entries = {"training": datalist.training, "validation": datalist.validation,
               "all": datalist.training + datalist.validation}[args.split]
    if len(entries) < 3:
        raise SmartNetError(f"t-SNE needs at least 3 volumes, the datalist's {args.split} split has {len(entries)}",
                            args.datalist)
    sink.progress("load", 0.0, "reading labels")
    cases = []
    for case in entries:
        label = read_label(case.label, read_ct(case.image), case.image).array if case.label else None
        cases.append((case.image, label))
    device = resolve_device(args.device)
    embeddings, points = [], []
    share = 0.9 / len(args.model)
    for n, name in enumerate(args.model):
        model, card = load_model(resolve_model(name), device)
        progress = StageProgress(sink, "features", 0.05 + n * share, 0.05 + (n + 1) * share)
        emb = collect(Analyzer(model, card, device), cases, args.features,
                      lambda f, p=progress: p(f, "features"), args.max_slices)
        embeddings.append(emb)
        points.append(tsne(emb.features, args.seed))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    plot(embeddings, points, args.output, args.features)
    coordinates = args.output.with_suffix(".json")
    coordinates.write_text(json.dumps([{"model": e.model, "points": [
        {"case": c, "label": lab, "x": round(float(x), 4), "y": round(float(y), 4)}
        for c, lab, (x, y) in zip(e.cases, e.labels, p)]} for e, p in zip(embeddings, points)]) + "\n")
    sink.progress("done", 1.0, "t-SNE written")
    return {"output": str(args.output), "coordinates": str(coordinates), "points": len(embeddings[0].labels),
            "models": [e.model for e in embeddings]}


def summarize(result: dict) -> str:
    return f"t-SNE of {result['points']} points ({', '.join(result['models'])}) written to {result['output']}"
