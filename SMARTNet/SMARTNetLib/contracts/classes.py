"""Hemorrhage classes: names, label values, colours and Slicer terminology.

Label values follow the BHSD convention: 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH. A model trained on
binary masks has the single class ``hemorrhage`` with label value 1.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
# SNOMED CT: Morphologically Altered Structure / Hemorrhage. The subtype is a type modifier in a
# private coding scheme ("99" prefix, as DICOM allows), so that no SNOMED code is guessed.
CATEGORY = ["SCT", "49755003", "Morphologically Altered Structure"]
HEMORRHAGE_TYPE = ["SCT", "50960005", "Hemorrhage"]
PRIVATE_SCHEME = "99SMARTNET"


@dataclass(frozen=True)
class HemorrhageClass:
    """One segmentation class of a model."""

    name: str
    label_value: int
    abbreviation: str
    color: tuple[float, float, float]

    @property
    def display_name(self) -> str:
        return self.name.capitalize()

    @property
    def terminology(self) -> dict:
        """Terminology entry as a slicerio dict (stored in the segment's TerminologyEntry tag)."""
        entry = {"contextName": TERMINOLOGY_CONTEXT, "category": CATEGORY, "type": HEMORRHAGE_TYPE}
        if self.abbreviation != "ICH":
            entry["typeModifier"] = [PRIVATE_SCHEME, self.abbreviation, self.display_name]
        entry["anatomicContextName"] = ANATOMIC_CONTEXT
        return entry


# Okabe-Ito colours (colour-blind safe), as RGB in [0, 1].
SUBTYPES: tuple[HemorrhageClass, ...] = (
    HemorrhageClass("epidural", 1, "EDH", (0.902, 0.624, 0.0)),
    HemorrhageClass("intraparenchymal", 2, "IPH", (0.835, 0.369, 0.0)),
    HemorrhageClass("intraventricular", 3, "IVH", (0.0, 0.447, 0.698)),
    HemorrhageClass("subarachnoid", 4, "SAH", (0.0, 0.620, 0.451)),
    HemorrhageClass("subdural", 5, "SDH", (0.800, 0.475, 0.655)),
)
HEMORRHAGE = HemorrhageClass("hemorrhage", 1, "ICH", (0.835, 0.369, 0.0))
SUBTYPE_NAMES: tuple[str, ...] = tuple(c.name for c in SUBTYPES)

_BY_NAME = {c.name: c for c in (*SUBTYPES, HEMORRHAGE)}

# Segment names users type in Slicer, mapped to class names (lower-case keys).
ALIASES: dict[str, str] = {
    **{c.name: c.name for c in SUBTYPES},
    **{c.abbreviation.lower(): c.name for c in SUBTYPES},
    "extradural": "epidural",
    "epidural hematoma": "epidural",
    "epidural hemorrhage": "epidural",
    "intracerebral": "intraparenchymal",
    "ich": "hemorrhage",
    "iph": "intraparenchymal",
    "intraparenchymal hemorrhage": "intraparenchymal",
    "intraventricular hemorrhage": "intraventricular",
    "subarachnoid hemorrhage": "subarachnoid",
    "subdural hematoma": "subdural",
    "subdural hemorrhage": "subdural",
    "hemorrhage": "hemorrhage",
    "haemorrhage": "hemorrhage",
    "bleed": "hemorrhage",
    "blood": "hemorrhage",
}


def get_class(name: str) -> HemorrhageClass:
    """Return the class called ``name`` (a subtype name or ``hemorrhage``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown hemorrhage class {name!r}; known: {', '.join(_BY_NAME)}") from None


def classes_for(names: list[str] | tuple[str, ...]) -> list[HemorrhageClass]:
    """Classes of a model, in the order of its segmentation channels."""
    return [get_class(n) for n in names]


def class_from_segment_name(segment_name: str) -> str | None:
    """Map a user's segment name (``"SDH"``, ``"Subdural hematoma"``...) to a class name, or None."""
    key = " ".join(segment_name.strip().lower().replace("_", " ").replace("-", " ").split())
    if key in ALIASES:
        return ALIASES[key]
    for alias, name in ALIASES.items():
        if len(alias) > 3 and alias in key:
            return name
    return None
