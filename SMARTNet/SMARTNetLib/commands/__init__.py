"""Sub-commands of the ``smartnet`` CLI (see :mod:`SMARTNetLib.cli`)."""
