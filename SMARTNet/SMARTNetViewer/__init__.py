"""``smartnet view``: analysis results in a browser, drawn by Slicer's own views (trame-slicer on slicer-core).

``cases`` reads an output folder (standard library only); ``case_scene`` puts one case into a Slicer scene with
the SMARTNet module's own results logic; ``page`` is the trame page of one browser session; ``launcher`` gives
each browser session its own page process. trame-slicer pins slicer-core and VTK, so this package runs in its
own environment (``bash scripts/setup.sh --web``: ``.venv-web``).
"""
