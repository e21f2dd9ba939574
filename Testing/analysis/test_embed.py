"""``smartnet embed``: t-SNE plots of slice and volume features through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from conftest import events_of, head_phantom, run_cli


def _datalist(tmp_path):
    entries = []
    for n in range(4):
        ct, label = head_phantom(bleed=n % 2 == 0, origin=(-20.0 + n, 10.0, -30.0))
        for image, kind in ((ct, "ct"), (label, "label")):
            sitk.WriteImage(image, str(tmp_path / f"case{n}_{kind}.nii.gz"))
        entries.append({"image": f"case{n}_ct.nii.gz", "label": f"case{n}_label.nii.gz"})
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": entries}))
    return path


def test_embed_slice_features_two_models(tmp_path, tiny_model):
    out = tmp_path / "plots" / "tsne.png"
    proc = run_cli("embed", "--datalist", str(_datalist(tmp_path)), "--model", str(tiny_model), "--model",
                   str(tiny_model), "--features", "slice", "--output", str(out), "--events")
    assert proc.returncode == 0, proc.stderr
    result = events_of(proc)[-1]
    assert result["event"] == "result" and result["points"] == 4 * 12
    coords = json.loads(out.with_suffix(".json").read_text())
    assert len(coords) == 2 and all(len(m["points"]) == 48 for m in coords)
    labels = {p["label"] for p in coords[0]["points"]}
    assert labels == {"negative", "subdural"}  # the phantom's bleed is labelled 5 (subdural) on some slices
    pixels = np.asarray(__import__("matplotlib.image", fromlist=["imread"]).imread(out))
    assert pixels.shape[1] > pixels.shape[0] * 1.5  # two panels side by side
    assert pixels[..., :3].std() > 0.05


def test_embed_volume_features_and_errors(tmp_path, tiny_model):
    out = tmp_path / "tsne.png"
    proc = run_cli("embed", "--datalist", str(_datalist(tmp_path)), "--model", str(tiny_model), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    points = json.loads(out.with_suffix(".json").read_text())[0]["points"]
    assert sorted(p["label"] for p in points) == ["negative", "negative", "subdural", "subdural"]
    bad = run_cli("embed", "--datalist", str(tmp_path / "missing.json"), "--model", str(tiny_model), "--output",
                  str(tmp_path / "x.png"))
    assert bad.returncode == 2 and "datalist file not found" in bad.stderr
