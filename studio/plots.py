"""Gradio plot values the tabs share."""

from typing import Any

import gradio as gr
import pandas as pd


def histogram(data: pd.DataFrame | None, x: str) -> Any:
    """A BarPlot value whose bars are as wide as the histogram's bins: `x` holds bin centres on a numeric axis
    (overlaps and early turns left of zero), which without a bin width Vega draws as hairlines. No rows: no
    chart (an empty one draws "null" axes)."""
    if data is None or data.empty:
        return gr.BarPlot(value=None)
    centres = sorted(set(data[x]))
    width = min(b - a for a, b in zip(centres, centres[1:])) if len(centres) > 1 else None
    return gr.BarPlot(value=data, x_bin=width)
