"""The torch-only network (model/layers.py) against MONAI's: same weights, same outputs and gradients, no MONAI
import when the real CLI analyses a CT."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from SMARTNetLib.contracts.model_card import ARCHITECTURES, ModelCard
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.model.store import load_model, resolve_model


@pytest.mark.parametrize("arch", ["default", "tiny"])
def test_twins_match_monai_in_eval_and_training(arch):
    torch.manual_seed(0)
    card = ModelCard(name="m", architecture=ARCHITECTURES[arch])
    monai_net = SmartNet(card)
    twin = SmartNet(card, torch_only=True)
    assert "monai" in type(monai_net.unet).__module__ and "monai" not in type(twin.unet).__module__
    assert list(twin.state_dict()) == list(monai_net.state_dict())
    state = {k: (v + 0.05 * torch.randn_like(v)) if v.is_floating_point() else v  # non-trivial running stats too
             for k, v in monai_net.state_dict().items()}
    monai_net.load_state_dict(state)
    twin.load_state_dict(state)
    x = torch.rand(3, card.preprocessing.in_channels, 64, 64)
    for train in (False, True):
        monai_net.train(train)
        twin.train(train)
        torch.manual_seed(1)
        a = monai_net.forward_slices(x.clone().requires_grad_())
        torch.manual_seed(1)
        b = twin.forward_slices(x.clone().requires_grad_())
        for key in ("seg", "rec", "decoder", "features"):
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
        refined_a = monai_net.segment_volume(a["decoder"], a["seg"])
        refined_b = twin.segment_volume(b["decoder"], b["seg"])
        torch.testing.assert_close(refined_b, refined_a, rtol=1e-4, atol=1e-5)
        if train:
            (refined_a.square().mean() + a["rec"].mean()).backward()
            (refined_b.square().mean() + b["rec"].mean()).backward()
            grads_a = dict(monai_net.named_parameters())
            for name, param in twin.named_parameters():
                if param.grad is not None or grads_a[name].grad is not None:
                    torch.testing.assert_close(param.grad, grads_a[name].grad, rtol=1e-3, atol=1e-5, msg=name)


def test_bundled_model_loads_without_monai_blocks_and_agrees():
    folder = resolve_model("smartnet-default")
    twin, _ = load_model(folder)
    monai_net, _ = load_model(folder, torch_only=False)
    assert "monai" not in type(twin.unet.encoder).__module__
    x = torch.rand(2, 9, 128, 128)
    with torch.no_grad():
        a, b = monai_net.forward_slices(x), twin.forward_slices(x)
    torch.testing.assert_close(b["seg"], a["seg"], rtol=1e-4, atol=1e-4)


def test_cli_analysis_never_imports_monai(ct_file, tiny_model, tmp_path):
    code = ("import sys; from SMARTNetLib.cli import main; "
            f"rc = main(['analyze', {str(ct_file)!r}, '-o', {str(tmp_path / 'out')!r}, '--model', "
            f"{str(tiny_model)!r}, '--explain', 'gradcam']); "
            "print('monai' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "out" / "segmentation.seg.nrrd").is_file()
