"""Known processors' thermal design power (TDP), matched against the CPU model string.

TDP is the maker's figure for the whole package at base frequency; the K-function (TDP x time
per inference) is a model of energy, labelled as such, never a measurement.
"""

from __future__ import annotations

import re

# (pattern matched case-insensitively against the CPU model name, TDP in watts)
CPU_TDP_W: tuple[tuple[str, float], ...] = (
    (r"i7-8550U", 15.0),  # the LArTPC study's laptop CPU
    (r"Xeon.*E3-1270 v?5", 80.0),  # host of the edge study's Quadro K620
    (r"i7-8650U", 15.0),
    (r"i7-1165G7", 28.0),
    (r"i9-9900K\b", 95.0),
    (r"Xeon.*Gold 6248\b", 150.0),
    (r"Xeon.*Platinum 8380\b", 270.0),
    (r"EPYC 7742\b", 225.0),
    (r"EPYC 7763\b", 280.0),
    (r"EPYC 9654\b", 360.0),
    (r"Apple M1\b", 20.0),
)


def cpu_tdp_w(model_name: str) -> float | None:
    """The catalogue's TDP for this CPU model, or None when it does not know the part."""
    for pattern, watts in CPU_TDP_W:
        if re.search(pattern, model_name, flags=re.IGNORECASE):
            return watts
    return None
