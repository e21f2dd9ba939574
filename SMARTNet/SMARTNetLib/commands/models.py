"""``smartnet models``: list the bundled and the user's models."""

from __future__ import annotations

import argparse

from SMARTNetLib.contracts.events import EventSink
from SMARTNetLib.contracts.locations import user_models_dir
from SMARTNetLib.model.store import list_models

HELP = "list the bundled models and the user's models ($SMARTNET_HOME/models, default ~/.smartnet/models)"


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, sink: EventSink) -> dict:
    return {"user_models_dir": str(user_models_dir()), "models": [m.to_dict() for m in list_models()]}


def summarize(result: dict) -> str:
    if not result["models"]:
        return f"no models found (user models go in {result['user_models_dir']})"
    lines = []
    for m in result["models"]:
        origin = "bundled" if m["bundled"] else "user"
        lines.append(f"{m['name']} {m['version']} [{origin}] classes: {', '.join(m['classes'])}")
        lines.append(f"    {m['description']}" + ("  (synthetic training data only)" if m["synthetic_only"] else ""))
        lines.append(f"    {m['path']}")
    return "\n".join(lines)
