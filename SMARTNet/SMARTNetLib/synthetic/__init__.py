"""Synthetic head CT with intracranial hemorrhage of the five subtypes, for training and tests.

- :func:`make_case`: one case (CT, label map, description), procedural or in a real head.
- :func:`write_dataset`: a folder of cases and a MONAI-style ``datalist.json`` (``smartnet synth``).
- :func:`load_real_head`: the normal head CT of Debian's ``invesalius-examples``, or None.
"""

from SMARTNetLib.synthetic.dataset import make_case, write_dataset
from SMARTNetLib.synthetic.real_head import load_real_head

__all__ = ["make_case", "write_dataset", "load_real_head"]
