"""Model cards, model folders, the network's volume operators and slice preprocessing."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from conftest import events_of, run_cli
from SMARTNetLib.analysis.preprocessing import SliceGrid, apply_windows, slice_channels
from SMARTNetLib.contracts.errors import SmartNetError
from SMARTNetLib.contracts.events import parse_event
from SMARTNetLib.contracts.model_card import ARCHITECTURES, Architecture, ModelCard, Preprocessing
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.model.store import list_models, load_model, resolve_model, save_model


def _card(**kw) -> ModelCard:
    return ModelCard(name=kw.pop("name", "m"), architecture=kw.pop("architecture", ARCHITECTURES["tiny"]),
                     preprocessing=Preprocessing(windows=("brain", "bone"), context_slices=1), **kw)


def test_card_round_trip_and_outputs():
    card = _card(classes=("hemorrhage",), description="Binary model\nmore text")
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert again == card
    assert card.output_names == ["hemorrhage"] and card.summary == "Binary model (hemorrhage)"
    assert _card().output_names[0] == "any" and len(_card().output_names) == 6
    with pytest.raises(ValueError, match="unknown hemorrhage class"):
        _card(classes=("tumour",))
    with pytest.raises(ValueError, match="unknown HU window"):
        Preprocessing(windows=("lung",))
    with pytest.raises(ValueError, match="newer than this engine"):
        ModelCard.from_dict({**card.to_dict(), "format_version": 99})


def test_save_load_half_precision_and_listing(tmp_path, smartnet_home):
    torch.manual_seed(0)
    card = _card(name="user-model", version="2.0")
    model = SmartNet(card).eval()
    folder = save_model(model, card, smartnet_home / "models" / "user-model", half=True)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.pt"]
    loaded, loaded_card = load_model(resolve_model("user-model"))
    assert loaded_card == card
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(loaded.state_dict()[key], value.half().float())
    (smartnet_home / "models" / "not-a-model").mkdir()
    (smartnet_home / "models" / "bad-card").mkdir()
    (smartnet_home / "models" / "bad-card" / "model.json").write_text("{broken")
    mine = [m for m in list_models() if not m.bundled]
    assert [(m.name, m.version, m.classes) for m in mine] == [("user-model", "2.0", card.classes)]
    with pytest.raises(SmartNetError, match="invalid model card"):
        load_model(smartnet_home / "models" / "bad-card")
    # saving again replaces the folder atomically, leaving no temporary folders behind
    save_model(model, card, folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["bad-card", "not-a-model", "user-model"]


def test_models_command_lists_user_models(tmp_path):
    home = tmp_path / "home"
    card = _card(name="mine", description="Fine-tuned on our cases")
    save_model(SmartNet(card), card, home / "models" / "mine")
    proc = run_cli("models", "--events", env={"SMARTNET_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    events = [parse_event(line) for line in proc.stdout.splitlines()]
    result = events[-1]
    user = [m for m in result["models"] if not m["bundled"]]
    assert user == [{"name": "mine", "version": "0.1.0", "path": str(home / "models" / "mine"),
                     "classes": list(card.classes), "description": card.summary, "synthetic_only": True,
                     "bundled": False}]
    text = run_cli("models", env={"SMARTNET_HOME": str(home)})
    assert "mine 0.1.0 [user]" in text.stdout and "Fine-tuned on our cases" in text.stdout
    assert events_of(proc)[-1]["user_models_dir"] == str(home / "models")


@pytest.mark.parametrize("operator", ["lstm", "transformer"])
def test_volume_classifier_handles_variable_depth(operator):
    torch.manual_seed(0)
    card = ModelCard(name="m", architecture=Architecture(**{**ARCHITECTURES["tiny"].__dict__,
                                                             "volume_operator": operator}))
    net = SmartNet(card).eval()
    a, b = torch.randn(1, 7, net.operator_size), torch.randn(1, 4, net.operator_size)
    padded = torch.cat([a, torch.cat([b, torch.zeros(1, 3, net.operator_size)], 1)])
    with torch.no_grad():
        batched = net.volume_classifier(padded, torch.tensor([7, 4]))
        torch.testing.assert_close(batched[0], net.volume_classifier(a)[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batched[1], net.volume_classifier(b)[0], atol=1e-5, rtol=1e-4)


def test_forward_shapes_and_reconstruction_range():
    card = _card()
    net = SmartNet(card).eval()
    x = torch.rand(3, card.preprocessing.in_channels, 128, 128)
    with torch.no_grad():
        out = net.forward_slices(x)
    assert out["cls"].shape == (3, 6) and out["seg"].shape == (3, 5, 128, 128)
    assert out["rec"].shape == x.shape and 0 <= out["rec"].min() and out["rec"].max() <= 1
    assert out["features"].shape == (3, net.feature_size) and out["operator"].shape == (3, net.operator_size)
    # the 3D operator starts as the identity on the 2D logits (zero-initialised output layer)
    seg3d = net.volume_segmenter(out["decoder"].permute(1, 0, 2, 3)[None], out["seg"].permute(1, 0, 2, 3)[None])
    torch.testing.assert_close(seg3d[0].permute(1, 0, 2, 3), out["seg"])


@pytest.mark.parametrize("inputs", ["encoder", "segmentation", "both"])
def test_grad_cam_recomputes_the_volume_classifiers_input_exactly(inputs):
    """Grad-CAM reruns the encoder's tail (and the decoder, for segmentation evidence) from stored maps: the
    vectors it differentiates must be those inference classified; old cards without the field read "encoder"."""
    torch.manual_seed(0)
    arch = Architecture(**{**ARCHITECTURES["tiny"].__dict__, "operator_inputs": inputs})
    card = _card(architecture=arch)
    old = card.to_dict()
    del old["architecture"]["operator_inputs"]
    assert ModelCard.from_dict(old).architecture.operator_inputs == "encoder"
    net = SmartNet(card).eval()
    x = torch.rand(5, card.preprocessing.in_channels, 64, 64)
    with torch.no_grad():
        out = net.forward_slices(x, reconstruct=False)
        again = net.operator_input([*out["skips"], *net.encoder_tail(out["stage"], net.explain_stage)])
    expected = {"encoder": net.feature_size, "segmentation": 10, "both": net.feature_size + 10}[inputs]
    assert out["operator"].shape == (5, expected) == (5, net.operator_size)
    torch.testing.assert_close(again["operator"], out["operator"])
    with pytest.raises(ValueError, match="operator_inputs must be one of"):
        Architecture(operator_inputs="pixels")


def test_slice_grid_round_trip_keeps_aspect():
    grid = SliceGrid(height=30, width=50, size=64)
    assert grid.padding == (0, 0, 10, 10)
    x = torch.zeros(1, 1, 30, 50)
    x[..., 10:20, 20:30] = 1.0
    model = grid.to_model(x, fill=0.0, mode="nearest")
    assert model.shape == (1, 1, 64, 64)
    back = grid.restore(model, mode="nearest")
    assert back.shape == (1, 1, 30, 50)
    assert (back == x).float().mean() > 0.97


def test_windows_and_neighbour_channels():
    hu = torch.tensor([-1000.0, 0.0, 40.0, 80.0, 2000.0]).reshape(5, 1, 1)
    windowed = apply_windows(hu, ("brain", "bone"))
    torch.testing.assert_close(windowed[:, 0, 0, 0], torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    x = slice_channels(windowed, torch.tensor([0, 4]), context=1)
    assert x.shape == (2, 6, 1, 1)
    torch.testing.assert_close(x[0, :2], windowed[0])  # edge slice repeats itself
    torch.testing.assert_close(x[0, 4:], windowed[1])
    torch.testing.assert_close(x[1, 2:4], windowed[4])


def test_thin_slices_are_pooled_into_slabs_and_mapped_back(tiny_model):
    from conftest import head_phantom
    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.analysis.preprocessing import pool_label_slabs, slab_groups, slab_weights
    from SMARTNetLib.model.store import load_model

    assert slab_groups(10, 1.0, 4.0) == [(0, 4), (4, 8), (8, 10)]
    assert slab_groups(6, 5.0, 4.0) == [(n, n + 1) for n in range(6)] and slab_weights(slab_groups(6, 5, 4), 6) is None
    weights = slab_weights([(0, 4), (4, 8)], 8)
    torch.testing.assert_close(weights.sum(1), torch.ones(8))
    assert weights[0, 0] == 1 and weights[7, 1] == 1 and 0 < weights[4, 0] < 1
    labels = torch.zeros(4, 2, 2, dtype=torch.uint8)
    labels[:3, 0, 0] = 5  # 3 of 4 slices: kept
    labels[:1, 1, 1] = 2  # 1 of 4 slices: below half, dropped
    pooled = pool_label_slabs(labels, [(0, 4)], [1, 2, 3, 4, 5])
    assert pooled.tolist() == [[[5, 0], [0, 0]]]

    model, card = load_model(tiny_model)
    ct, _ = head_phantom(size=(40, 32, 30), spacing=(0.9, 0.9, 1.25))
    analysis = Analyzer(model, card, torch.device("cpu")).analyze(ct, explain="gradcam")
    assert analysis.labels.GetSize() == ct.GetSize() and len(analysis.slice_probabilities) == 30
    heat = next(iter(analysis.activations.values()))
    assert heat.GetSize() == ct.GetSize() and heat.GetOrigin() == ct.GetOrigin()


@pytest.mark.parametrize("segmentation", ["multilabel", "exclusive"])
def test_refined_segmentation_evidence_is_that_of_the_whole_volume(segmentation):
    """"segmentation-3d": the volume classifier reads the evidence of the 3D operator's probabilities. Inference
    computes them in chunks of slabs; the probabilities and the decision must equal one pass over the volume,
    and Grad-CAM is taken at those maps."""
    from conftest import head_phantom
    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.analysis.preprocessing import slab_groups
    from SMARTNetLib.io.volume import to_canonical
    from SMARTNetLib.model.network import evidence_of_probabilities

    torch.manual_seed(0)
    card = _card(architecture=Architecture(**{**ARCHITECTURES["tiny"].__dict__, "operator_inputs": "segmentation-3d",
                                              "volume_segmentation": segmentation}))
    net = SmartNet(card).eval()
    torch.nn.init.normal_(net.volume_segmenter.out.weight, std=0.5)  # zero at init: the 3D part would do nothing
    assert net.operator_size == 10 and net.reads_refined_segmentation
    with torch.no_grad():
        x = torch.rand(2, card.preprocessing.in_channels, 64, 64)
        assert "operator" not in net.forward_slices(x, reconstruct=False)
    analyzer = Analyzer(net, card, torch.device("cpu"))
    ct, _ = head_phantom(size=(48, 40, 40), spacing=(0.9, 0.7, 5.0))  # 40 slabs: three chunks
    analysis = analyzer.analyze(ct, explain="gradcam")

    canonical = to_canonical(ct)
    windowed, grid = analyzer._prepare(canonical, slab_groups(40, 5.0, card.preprocessing.slab_mm))
    slices = analyzer._run_slices(windowed, lambda f: None)
    with torch.no_grad():
        logits = net.volume_segmenter(slices["decoder"].permute(1, 0, 2, 3)[None],
                                      slices["seg"].permute(1, 0, 2, 3)[None])
        if segmentation == "exclusive":  # a softmax over background (logit 0) and the classes
            whole = torch.softmax(torch.cat([torch.zeros_like(logits[0, :1]), logits[0]]), dim=0)[1:]
        else:
            whole = torch.sigmoid(logits[0])
        whole = whole.permute(1, 0, 2, 3)
        expected = torch.sigmoid(net.volume_classifier(evidence_of_probabilities(whole)[None])[0])
    torch.testing.assert_close(analyzer._refine(slices, lambda f: None), whole, atol=1e-5, rtol=1e-4)
    assert (whole - torch.sigmoid(slices["seg"])).abs().max() > 0.01  # the 3D operator changed the evidence
    got = torch.tensor([analysis.probabilities[name] for name in card.output_names])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert sitk.GetArrayFromImage(analysis.activations["any"]).shape == (40, 40, 48)

    # Grad-CAM of a 3D map: channel weights = the gradient averaged over the whole volume (not per slice)
    maps = whole.clone().requires_grad_(True)
    logits = net.volume_classifier(evidence_of_probabilities(maps)[None])[0]
    shown, differs = 0, False
    for target in range(len(card.output_names)):
        (grads,) = torch.autograd.grad(logits[target], maps, retain_graph=True)
        cam = (grads.mean(dim=(0, 2, 3))[None, :, None, None] * whole).sum(1).clamp(min=0)
        per_slice = (grads.mean(dim=(2, 3), keepdim=True) * whole).sum(1).clamp(min=0)
        heat = analyzer._explain(slices, whole, grid, None, "gradcam", target)
        if cam.max() == 0:
            assert heat.max() == 0
            continue
        shown += 1
        differs |= not torch.allclose(per_slice / per_slice.max().clamp(min=1e-12), cam / cam.max(), atol=1e-3)
        cam = F.interpolate((cam / cam.max())[:, None], size=(grid.size, grid.size), mode="bilinear")
        torch.testing.assert_close(heat, grid.restore(cam)[:, 0].clamp(0, 1), atol=1e-5, rtol=1e-4)
    assert shown > 0 and differs  # a map was made, and per-slice weights would have made another


def test_exclusive_volume_segmentation_labels_a_voxel_where_any_hemorrhage_is_likely():
    """With "exclusive" classes a voxel is hemorrhage when the classes' probabilities add up to more than the
    threshold, labelled with the most probable; with "multilabel" ones when one class exceeds it. Its loss
    rewards the right subtype over the equal logits a sigmoid head gives all classes, and those over a wrong
    subtype; old cards read "multilabel"."""
    from SMARTNetLib.analysis.inference import Analyzer
    from SMARTNetLib.model.network import exclusive_probabilities
    from SMARTNetLib.training.losses import ExclusiveDiceCELoss

    old = _card().to_dict()
    del old["architecture"]["volume_segmentation"]
    assert ModelCard.from_dict(old).architecture.volume_segmentation == "multilabel"
    with pytest.raises(ValueError, match="volume_segmentation must be one of"):
        Architecture(volume_segmentation="softmax")
    logits = torch.tensor([[0.7], [-1.2]])
    torch.testing.assert_close(exclusive_probabilities(logits[:1], dim=0), torch.sigmoid(logits[:1]))
    assert exclusive_probabilities(logits, dim=0).sum() < 1

    probs = torch.zeros(2, 5, 8, 8)
    probs[1, 3, 2:4, 2:4], probs[1, 4, 2:4, 2:4] = 0.3, 0.35  # subarachnoid 0.3, subdural 0.35
    probs[0, 1, 5, 5] = 0.9  # intraparenchymal
    labelled = {}
    for segmentation in ("multilabel", "exclusive"):
        card = _card(architecture=Architecture(**{**ARCHITECTURES["tiny"].__dict__,
                                                  "volume_segmentation": segmentation}))
        analyzer = Analyzer(SmartNet(card).eval(), card, torch.device("cpu"))
        labelled[segmentation] = analyzer._labels(probs, SliceGrid(height=8, width=8, size=8), None, lambda f: None)[0]
    assert labelled["multilabel"][0, 5, 5] == labelled["exclusive"][0, 5, 5] == 2
    assert (labelled["multilabel"][1] == 0).all()
    assert (labelled["exclusive"][1, 2:4, 2:4] == 5).all() and labelled["exclusive"][1].sum() == 4 * 5

    target = torch.zeros(1, 5, 2, 8, 8)
    target[0, 4, :, 2:6, 2:6] = 1  # subdural
    loss = ExclusiveDiceCELoss()

    def logits_saying(k: int | None) -> torch.Tensor:
        z = torch.full((1, 5, 2, 8, 8), -4.0)
        z[0, :, :, 2:6, 2:6] = 4.0 if k is None else -4.0
        if k is not None:
            z[0, k, :, 2:6, 2:6] = 4.0
        return z

    assert loss(logits_saying(4), target) < loss(logits_saying(None), target) < loss(logits_saying(0), target)
