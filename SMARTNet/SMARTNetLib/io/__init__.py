"""Files in and out: CT volumes and DICOM series in (SimpleITK, pydicom), analysis outputs and DICOM SEG out."""
