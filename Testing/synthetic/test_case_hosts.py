"""``make_case``'s hosts: the label-map-first generator reached through ``host="labelmap"`` and ``"diverse"``."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

from SMARTNetLib.synthetic import load_real_head, make_case, write_dataset
from SMARTNetLib.synthetic.dataset import case_source


def test_labelmap_host_gives_the_requested_bleed_from_the_other_generator():
    ct, label, info = make_case(11, host="labelmap", subtypes=["SDH"])
    assert info["host"] == "labelmap"
    assert info["subtypes"] == ["subdural"] and info["volume_ml"]["subdural"] > 0.3
    values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
    assert values == {0, 5}
    assert ct.GetSize() == label.GetSize() and ct.GetPixelID() == sitk.sitkInt16


def test_diverse_host_draws_every_source_and_writes_a_datalist(tmp_path):
    summary = write_dataset(tmp_path, 12, seed=5, host="diverse", style="randomised", validation_fraction=0.25)
    drawn = {h for h, n in summary["hosts"].items() if n}
    assert "labelmap" in drawn and "procedural" in drawn  # "real" only where invesalius-examples is installed
    assert sum(summary["hosts"].values()) == 12
    datalist = json.loads((tmp_path / "datalist.json").read_text())
    assert len(datalist["training"]) == 9 and len(datalist["validation"]) == 3
    assert 0 < summary["negatives"] < 12  # about NEGATIVE_FRACTION of them
    real_head = load_real_head() is not None
    for entry in datalist["training"] + datalist["validation"]:  # known before the case is made
        drawn = case_source(entry["seed"], "diverse")
        assert entry["host"] == (drawn if real_head or drawn != "real" else "procedural")
