"""How often a scan's subtype probability exceeds its any-hemorrhage probability, per set of an evaluation JSON.

Reads the per-case rows that ``evaluate_model.py`` (``cases``) or ``select_model.py`` (``models[...]["cases"]``)
wrote; prints, per set, the volumes where some subtype is above "any" and the largest excess.

    python benchmarks/subtype_coherence.py benchmarks/results/evaluation-smartnet-default.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def above_any(rows: list[dict]) -> dict:
    """Volumes with a subtype probability above the any-hemorrhage probability, and the largest excess."""
    gaps = [max(s["probability"] for s in r["subtypes"].values()) - r["probability"] for r in rows if r.get("subtypes")]
    over = [g for g in gaps if g > 0]
    return {"cases": len(gaps), "subtype_above_any": len(over), "largest_excess": round(max(over, default=0.0), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluation", type=Path)
    data = json.loads(parser.parse_args().evaluation.read_text())
    sets = data.get("cases") or {name: m["cases"] for name, m in data.get("models", {}).items()}
    print(json.dumps({name: above_any(rows) for name, rows in sets.items()}, indent=1))


if __name__ == "__main__":
    main()
