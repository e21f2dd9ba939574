"""Shared fixtures: a tiny random-weight model folder and small head-like CT volumes written to real files; what a
test needs to see processes come and go (Linux /proc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from SMARTNetLib.contracts.model_card import ARCHITECTURES, ModelCard, Preprocessing
from SMARTNetLib.model.network import SmartNet
from SMARTNetLib.model.store import save_model
from SMARTNetLib.synthetic.real_head import load_real_head

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]  # the repository
ENGINE_PARENT = str(ROOT / "SMARTNet")  # the folder holding SMARTNetLib, as the Slicer modules put on the path

OBLIQUE = (0.9659258, -0.2588190, 0.0, 0.2588190, 0.9659258, 0.0, 0.0, 0.0, 1.0)  # 15 degrees about S


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def process_gone(pid: int, seconds: float = 15) -> bool:
    """Waits up to ``seconds`` for the process to end."""
    deadline = time.monotonic() + seconds
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not process_alive(pid)


def child_pids(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc; none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def head_phantom(size: tuple[int, int, int] = (48, 40, 12), spacing=(0.9, 0.7, 5.0), origin=(-20.0, 10.0, -30.0),
                 direction=OBLIQUE, bleed: bool = True) -> tuple[sitk.Image, sitk.Image]:
    """A head-like CT (air, skull, brain, optional 60 HU bleed) and its label map (bleed = 5, subdural)."""
    nx, ny, nz = size
    z, y, x = np.meshgrid(np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    r = np.sqrt(x**2 + y**2 + (0.5 * z) ** 2)
    ct = np.full(r.shape, -1000, np.int16)
    ct[r < 0.95] = 1200
    ct[r < 0.85] = 35
    label = np.zeros(r.shape, np.uint8)
    if bleed:
        blob = ((x - 0.4) ** 2 + (y - 0.1) ** 2) < 0.06
        label[blob & (r < 0.85)] = 5
        ct[label == 5] = 65
    images = []
    for array in (ct, label):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(spacing)
        img.SetOrigin(origin)
        img.SetDirection(direction)
        images.append(img)
    return images[0], images[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder with random weights and the smallest architecture (fast on CPU)."""
    torch.manual_seed(0)
    card = ModelCard(name="tiny-test", version="0.0.1", description="Random weights for tests",
                     architecture=ARCHITECTURES["tiny"], preprocessing=Preprocessing(windows=("brain",),
                                                                                      context_slices=0))
    folder = tmp_path_factory.mktemp("models") / "tiny-test"
    return save_model(SmartNet(card), card, folder)


@pytest.fixture(scope="session")
def real_head() -> sitk.Image:
    """The real InVesalius normal head CT (Debian's invesalius-examples, read in place)."""
    image = load_real_head()
    if image is None:
        pytest.fail("the InVesalius head is not installed (scripts/setup.sh installs invesalius-examples)")
    return image


@pytest.fixture()
def ct_file(tmp_path) -> Path:
    ct, _ = head_phantom()
    path = tmp_path / "head.nrrd"
    sitk.WriteImage(ct, str(path))
    return path


@pytest.fixture()
def smartnet_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "smartnet-home"
    monkeypatch.setenv("SMARTNET_HOME", str(home))
    return home


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real ``smartnet`` CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "SMARTNetLib.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def events_of(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def kill_at_first_checkpoint(command: str, args: list[str], output: Path, env: dict, timeout: float = 120) -> Path:
    """Start ``smartnet COMMAND ARGS --output OUTPUT``, SIGKILL it once its first checkpoint exists; return that."""
    import signal
    import time

    checkpoint = output / "checkpoints" / "last.pt"
    child = subprocess.Popen([sys.executable, "-m", "SMARTNetLib.cli", command, *args, "--output", str(output)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.time() + timeout
    while not checkpoint.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    return checkpoint


def write_dicom_series(image: sitk.Image, folder: Path) -> Path:
    """Write ``image`` as a CT DICOM series (one file per slice) with its full geometry."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1" + time.strftime("%H%M%S")
    direction = image.GetDirection()
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        tags = {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0020|000e": series_uid,
            "0020|000d": series_uid + ".0", "0020|0052": series_uid + ".9", "0010|0010": "Test^Phantom",
            "0020|0037": "\\".join(f"{v:.7f}" for v in (direction[0], direction[3], direction[6],
                                                         direction[1], direction[4], direction[7])),
            "0020|0032": "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0013": str(k + 1), "0018|0050": f"{image.GetSpacing()[2]:.4f}",
            "0028|1052": "0", "0028|1053": "1", "0028|1054": "HU",
        }
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        s.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)
    return folder
