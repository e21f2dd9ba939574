"""Model folders from elsewhere are read safely: a pickle payload in the weights never runs, a broken card
is named, and each ends in one line and exit status 2 with no output."""

from __future__ import annotations

import pickle
import shutil

import pytest

from conftest import run_cli


class Payload:
    """Unpickling this runs ``open(marker, "w")``: what a hostile model.pt could do with full pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def analyze(ct_file, model, out):
    return run_cli("analyze", str(ct_file), "--output-dir", str(out), "--model", str(model), "--device", "cpu")


def test_pickle_payload_in_weights_is_refused_and_never_runs(tmp_path, ct_file, tiny_model):
    model = tmp_path / "hostile"
    shutil.copytree(tiny_model, model)
    marker = tmp_path / "payload-ran"
    (model / "model.pt").write_bytes(pickle.dumps({"state_dict": Payload(str(marker))}))
    proc = analyze(ct_file, model, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.pt" in lines[0], proc.stderr
    assert not marker.exists(), "the pickle payload ran"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("card", ['{"name": "x", "version": ', "[1, 2, 3]", '{"name": "x"}', ""])
def test_malformed_card_is_named_in_one_line(tmp_path, ct_file, tiny_model, card):
    model = tmp_path / "broken"
    shutil.copytree(tiny_model, model)
    (model / "model.json").write_text(card)
    proc = analyze(ct_file, model, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.json" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
