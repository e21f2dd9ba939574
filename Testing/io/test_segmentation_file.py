"""The engine's ``.seg.nrrd`` read back by slicerio: the label map voxel for voxel, its geometry, its extents."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicerio

from SMARTNetLib.contracts.classes import SUBTYPES
from SMARTNetLib.io import outputs


def test_label_map_geometry_and_extents_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    kji = np.zeros((7, 20, 30), np.uint8)  # a non-cubic grid: a swapped axis would not fit
    kji[2:5, 3:9, 10:21] = 2
    kji[6, 19, 0] = 5
    kji[rng.random(kji.shape) < 0.01] = 3
    image = sitk.GetImageFromArray(kji)
    image.SetSpacing((0.5, 0.7, 5.0))
    image.SetOrigin((-10.0, 20.0, 3.0))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    path = tmp_path / "segmentation.seg.nrrd"
    outputs.write_segmentation(path, image, list(SUBTYPES))

    seg = slicerio.read_segmentation(str(path))
    assert np.array_equal(seg["voxels"], kji.transpose(2, 1, 0))  # slicerio gives (i, j, k)
    assert np.allclose(seg["ijkToLPS"], outputs.ijk_to_lps(image))
    for cls, segment in zip(SUBTYPES, seg["segments"]):
        i, j, k = np.nonzero(kji.transpose(2, 1, 0) == cls.label_value)
        expected = [int(f(a)) for a in (i, j, k) for f in (np.min, np.max)] if i.size else [0, -1, 0, -1, 0, -1]
        assert (segment["labelValue"], segment["extent"]) == (cls.label_value, expected)
    assert seg["segments"][0]["extent"] == [0, -1, 0, -1, 0, -1]  # epidural: empty here
