"""Where models and user data live, and what a model may be called.

Bundled models ship inside the package (``SMARTNetLib/bundled_models/<name>``); the user's SMART-Net folder is
``$SMARTNET_HOME`` (default ``~/.smartnet``), with user models in its ``models/<name>``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_MODEL = "smartnet-default"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled_models"
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def smartnet_home() -> Path:
    """The user's SMART-Net folder: ``$SMARTNET_HOME`` or ``~/.smartnet``."""
    return Path(os.environ.get("SMARTNET_HOME") or Path.home() / ".smartnet").expanduser()


def user_models_dir() -> Path:
    """Where user models live: ``smartnet_home() / "models"``."""
    return smartnet_home() / "models"


def name_problem(name: str, models_dir: Path | None = None, overwrite: bool = False) -> str | None:
    """Why ``name`` cannot be a new model's name (folder name under the user models folder), or None.

    Args:
        name: the proposed model name.
        models_dir: the user models folder (default :func:`user_models_dir`).
        overwrite: whether an existing user model of that name may be replaced.

    Returns:
        One sentence for the user, or None when the name can be used.
    """
    models_dir = models_dir or user_models_dir()
    if not name:
        return "Enter a name for the new model."
    if not MODEL_NAME_PATTERN.match(name):
        return ("Model names use letters, digits, '.', '_' and '-' (up to 64 characters), and start with a letter "
                "or digit.")
    if (BUNDLED_DIR / name).is_dir():
        return f"'{name}' is the name of a bundled model; choose another name."
    if (models_dir / name).exists() and not overwrite:
        return f"A user model named '{name}' exists already; choose another name or replace it."
    return None
