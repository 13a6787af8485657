"""Reading the Plotly figures an AppTest page drew: by widget key, with their arrays decoded."""
from __future__ import annotations

import base64
import json

import numpy as np


def chart_keys(at) -> list[str]:
    """The keys of the page's st.plotly_chart elements, in page order."""
    return [c.proto.id.rsplit("-", 1)[1] for c in at.get("plotly_chart")]


def chart(at, key: str) -> dict:
    """The figure (as Plotly JSON) of the one chart drawn with `key`."""
    (found,) = [c for c in at.get("plotly_chart") if c.proto.id.endswith("-" + key)]
    return json.loads(found.proto.spec)


def array(value) -> np.ndarray:
    """A figure's array as Plotly's JSON holds it: a list, or a typed array (dtype, base64, shape)."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return flat.reshape([int(n) for n in str(value.get("shape", len(flat))).split(",")])
    return np.asarray(value)
