"""Regenerate the bundled sample head CT used by ``smartnet demo`` (synthetic: procedural head, SDH + IPH).

    python scripts/make_sample_ct.py
"""

from pathlib import Path

import SimpleITK as sitk

from SMARTNetLib.synthetic import make_case

SEED = 20263
DATA = Path(__file__).resolve().parents[1] / "SMARTNet" / "SMARTNetLib" / "data"

if __name__ == "__main__":
    ct, label, info = make_case(SEED, size="full", subtypes=["subdural", "intraparenchymal"], host="procedural")
    sitk.WriteImage(ct, str(DATA / "sample_head_ct.nii.gz"), useCompression=True)
    sitk.WriteImage(label, str(DATA / "sample_head_ct_truth.nii.gz"), useCompression=True)
    print(ct.GetSize(), ct.GetSpacing(), info["volume_ml"])
