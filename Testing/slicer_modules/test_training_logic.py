"""The SMARTNetTraining module's logic on slicer-core: cases from scene pairs, export, train, stop, resume,
register, and the progress chart filled from the engine's metrics events."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import slicerio
import vtk

from conftest import head_phantom
from mrml_world import SceneUnderTest, new_engine
from SMARTNetLib.client import training_command, training_set
from SMARTNetSlicerLib.training_logic import CHART_COLUMNS, TrainingLogic, matrixToList


@pytest.fixture()
def scene() -> SceneUnderTest:
    return SceneUnderTest()


@pytest.fixture()
def training(scene) -> TrainingLogic:
    return TrainingLogic(scene.logics, new_engine())


def orientedImage(mask_kji: np.ndarray, volume) -> object:
    """A vtkOrientedImageData of ``mask_kji`` on ``volume``'s grid."""
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    k, j, i = mask_kji.shape
    image.SetDimensions(i, j, k)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask_kji.astype(np.uint8).ravel(), deep=True))
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def addCase(scene: SceneUnderTest, folder, name: str, bleed: bool, offset_mm: float = 0.0) -> tuple:
    """A head CT loaded through the volumes logic and its segmentation: "SDH" (mapped) and "Skull" (not)."""
    ct, label = head_phantom(bleed=bleed)
    path = folder / f"{name}.nrrd"
    sitk.WriteImage(ct, str(path))
    volume = scene.loadVolume(path, name)
    segmentation = scene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    mask = sitk.GetArrayFromImage(label) > 0
    image = orientedImage(mask, volume)
    if offset_mm:
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        matrix.SetElement(0, 3, matrix.GetElement(0, 3) + offset_mm)
        image.SetImageToWorldMatrix(matrix)
    segmentation.AddSegmentFromBinaryLabelmapRepresentation(image, "SDH", [0.9, 0.8, 0.2])
    segmentation.GetSegmentation().AddEmptySegment("", "Skull")
    return volume, segmentation, mask


def test_scene_pairs_become_cases_and_unmapped_segments_are_flagged(scene, training, tmp_path):
    pairs = [addCase(scene, tmp_path, "Head 1", True)[:2], addCase(scene, tmp_path, "Head 2", False)[:2]]
    assert [(v.GetID(), s.GetID()) for v, s in training.loadedPairs()] == [(v.GetID(), s.GetID()) for v, s in pairs]
    cases = training_set.TrainingSet()
    for volume, segmentation in training.loadedPairs():
        assert cases.add(training.caseFromNodes(volume, segmentation))
    assert [[s.subtype for s in case.segments] for case in cases.cases] == [["subdural", None]] * 2
    assert [[s.name for s in case.unmapped_segments] for case in cases.cases] == [["Skull"]] * 2
    assert [training.caseProblem(c) for c in cases.cases] == ["", ""]
    assert not [p for p in cases.problems(val_split=0.5) if p.level == "error"]
    assert training_set.TrainingSet.from_json(cases.to_json()) == cases


def test_case_problems_name_what_is_wrong(scene, training, tmp_path):
    volume, segmentation, _ = addCase(scene, tmp_path, "outside", True, offset_mm=400.0)
    case = training.caseFromNodes(volume, segmentation)
    assert "entirely outside its volume" in training.caseProblem(case)
    scene.scene.RemoveNode(volume)
    assert training.caseProblem(case) == "volume or segmentation removed from the scene"
    missing = training_set.file_case(str(tmp_path / "nothing.nrrd"), str(tmp_path / "nothing.seg.nrrd"))
    assert training.caseProblem(missing) == "file not found"


def test_export_writes_ct_and_segment_on_the_ct_grid(scene, training, tmp_path):
    volume, segmentation, mask = addCase(scene, tmp_path, "Head 1", True)
    addCase(scene, tmp_path, "Head 2", False)
    cases = training_set.TrainingSet()
    for v, s in training.loadedPairs():
        cases.add(training.caseFromNodes(v, s))
    before = scene.nodeIDs()
    datalist = training.prepareWorkFolder(cases, str(tmp_path / "work"))
    assert scene.nodeIDs() == before, "the export left temporary nodes in the scene"
    entries = json.loads(open(datalist).read())["training"]
    assert len(entries) == 2
    folder = os.path.dirname(datalist)
    image = sitk.ReadImage(os.path.join(folder, entries[0]["image"]))
    original = sitk.ReadImage(str(tmp_path / "Head 1.nrrd"))
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(original))
    assert np.allclose(matrixToList(volume.GetIJKToRASMatrix),
                       matrixToList(scene.loadVolume(os.path.join(folder, entries[0]["image"])).GetIJKToRASMatrix),
                       atol=1e-4)
    seg = slicerio.read_segmentation(os.path.join(folder, entries[0]["label"]))
    names = [s["name"] for s in seg["segments"]]
    assert names == ["Subdural"]
    exported = slicerio.extract_segments(seg, [(names[0], 1)])["voxels"]
    exported_kji = np.transpose(exported, (2, 1, 0)) > 0  # slicerio gives (i, j, k)
    assert np.array_equal(exported_kji, mask)
    empty = slicerio.read_segmentation(os.path.join(folder, entries[1]["label"]))
    assert not np.any(empty["voxels"])


def test_train_stop_resume_register_and_list(smartnet_home, scene, training, tmp_path, tiny_model):
    """(``smartnet_home`` first: the engine session copies the environment when it is made.)"""
    for name, bleed in (("Head 1", True), ("Head 2", False), ("Head 3", True), ("Head 4", False)):
        addCase(scene, tmp_path, name, bleed)
    cases = training_set.TrainingSet()
    for v, s in training.loadedPairs():
        cases.add(training.caseFromNodes(v, s))
    workFolder = training.workFolder("slicer-test-model")
    assert workFolder.startswith(str(smartnet_home))
    datalist = training.prepareWorkFolder(cases, workFolder)
    options = training_command.TrainingOptions(
        datalist=datalist, output=os.path.join(workFolder, "model"), base_model=str(tiny_model),
        name="slicer-test-model", epochs=3, downstream_epochs=1, batch_size=2, val_split=0.5, device="cpu")

    # Start, then Stop once the first epoch has been reported (its checkpoint is written before the event).
    progress = training_command.TrainingProgress(options)
    chart = training.showChart(progress.curves)
    assert chart.GetNumberOfPlotSeriesNodes() == len(CHART_COLUMNS)
    finished = []

    def onEvent(event):
        progress.update(event)
        if event["event"] == "metrics":
            training.updateChart(progress.curves)
            training.cancel()

    training.train(options, onEvent=onEvent, onFinished=finished.append)
    training.waitForCompletion(300)
    assert finished[0].status == "cancelled"
    table = training.chart[0]
    assert progress.curves.epoch == [1]
    assert table.GetNumberOfRows() == 1
    assert table.GetTable().GetColumnByName("train_loss").GetValue(0) == pytest.approx(progress.curves.train_loss[0])
    assert training.canResume(workFolder)

    # Resume to the end; the same chart keeps filling.
    options.resume = True
    progress = training_command.TrainingProgress(options)
    finished.clear()

    def onResumedEvent(event):
        progress.update(event)
        if event["event"] == "metrics":
            training.updateChart(progress.curves)

    training.train(options, onEvent=onResumedEvent, onFinished=finished.append)
    training.waitForCompletion(600)
    assert finished[0].succeeded, finished[0].message + "\n".join(finished[0].stderr_tail)
    assert training.showChart(progress.curves) is chart
    assert table.GetNumberOfRows() == 3
    assert progress.curves.epoch == [2, 3, 4]  # upstream epochs 2-3, then the downstream epoch

    registered = []
    training.register(options, [c.name for c in cases.cases], overwrite=False, onFinished=registered.append)
    training.waitForCompletion(300)
    assert registered[0].succeeded, registered[0].message
    assert os.path.isfile(os.path.join(registered[0].result["model_dir"], "model.json"))
    listed = []
    training.listModels(lambda choices, error: listed.extend(c.name for c in choices))
    training.waitForCompletion(120)
    assert "slicer-test-model" in listed


def test_pretraining_on_the_loaded_volumes_stops_resumes_and_gives_a_base_model(smartnet_home, scene, training,
                                                                                 tmp_path, real_head):
    """The loaded volumes (no segmentation needed) written to the pretraining folder, TransVW started, stopped
    after its first epoch, resumed to the end: a model folder that fine-tuning can start from."""
    for n, degrees in enumerate((0.0, 7.0, -5.0)):
        transform = sitk.Euler3DTransform()
        transform.SetCenter(real_head.TransformContinuousIndexToPhysicalPoint([s / 2 for s in real_head.GetSize()]))
        transform.SetRotation(0.0, 0.0, np.radians(degrees))
        pose = sitk.Resample(sitk.BinShrink(real_head, [2, 2, 2]), transform, sitk.sitkLinear, -1024.0)
        sitk.WriteImage(pose, str(tmp_path / f"scan{n}.nrrd"))
        scene.loadVolume(tmp_path / f"scan{n}.nrrd", f"Scan {n}")
    folder = training.pretrainingFolder("slicer-pretrained")
    assert folder.startswith(str(smartnet_home))
    before = scene.nodeIDs()
    files = training.exportVolumes(training.unlabelledVolumes(), os.path.join(folder, "scans"))
    assert scene.nodeIDs() == before and [os.path.basename(f) for f in files] == ["Scan_0.nrrd", "Scan_1.nrrd",
                                                                                  "Scan_2.nrrd"]
    original = sitk.ReadImage(str(tmp_path / "scan1.nrrd"))
    written = sitk.Resample(sitk.ReadImage(files[1]), original, sitk.Transform(), sitk.sitkNearestNeighbor)
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(original))  # the same voxels in space
    options = training_command.PretrainingOptions(
        data=os.path.join(folder, "scans"), output=os.path.join(folder, "model"), method="transvw", epochs=3,
        steps_per_epoch=3, batch_size=4, words=6, instances=3, architecture="tiny", image_size=64, device="cpu")

    finished, epochs = [], []

    def onEvent(event):
        if event["event"] == "metrics":
            epochs.append(event["epoch"])
            training.cancel()

    training.pretrain(options, onEvent=onEvent, onFinished=finished.append)
    training.waitForCompletion(300)
    assert finished[0].status == "cancelled" and epochs == [1]
    assert training.canResumePretraining(options.output)

    options.resume = True
    finished.clear()
    lines = []
    training.pretrain(options, onEvent=lambda e: e["event"] == "metrics" and lines.append(
        training_command.pretraining_epoch_text(e)), onFinished=finished.append)
    training.waitForCompletion(300)
    assert finished[0].succeeded, finished[0].message + "\n".join(finished[0].stderr_tail)
    assert [line.split(":")[0] for line in lines] == ["Pretraining epoch 2/3", "Pretraining epoch 3/3"]
    assert "visual-word accuracy" in lines[-1]
    card = json.loads(open(os.path.join(options.output, "model.json")).read())
    assert card["provenance"]["pretraining"]["method"] == "transvw"
    assert card["metrics"]["pretraining"]["epoch"] == 3
