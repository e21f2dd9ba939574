"""What the SMARTNet and SMARTNetTraining modules do with MRML, apart from their Qt widgets.

Shared by composition: each module's logic holds an :class:`~.engine_session.EngineSession` (the engine in
a child process) and the scene's module logics (:class:`~.scene_context.ModuleLogics`), passed in by the
caller. Nothing here imports ``qt``, ``slicer.app``, ``slicer.modules`` or ``slicer.util.load*``, so the
same code runs in the Slicer application and on PyPI's ``slicer-core`` (the CI tests in ``Testing/slicer``).
"""
