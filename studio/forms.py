"""Gradio inputs generated from a stage's config dataclass: the same fields as the CLI flags."""

import typing
from pathlib import Path
from typing import Any

import gradio as gr

from backend.core import config


def config_inputs(
    cls: type, include: list[str], values: dict[str, Any] | None = None
) -> dict[str, gr.components.Component]:
    """One input per named field, labelled by its name, with the field's help as info text."""
    rows = {r["name"]: r for r in config.describe(cls)}
    values = values or {}
    inputs: dict[str, gr.components.Component] = {}
    for name in include:
        r = rows[name]
        value = values.get(name, r["default"])
        label = name.replace("_", " ")
        if r["choices"]:
            inputs[name] = gr.Dropdown(choices=list(r["choices"]), value=value, label=label, info=r["help"])
        elif r["type"] is bool:
            inputs[name] = gr.Checkbox(value=bool(value), label=label, info=r["help"])
        elif r["type"] in (int, float) and not r["optional"]:
            inputs[name] = gr.Number(
                value=value, label=label, info=r["help"], precision=0 if r["type"] is int else None
            )
        elif typing.get_origin(r["type"]) is list:
            inputs[name] = gr.Textbox(value=form_value(value), label=label, info=r["help"] + " (space-separated)")
        else:
            inputs[name] = gr.Textbox(
                value=form_value(value), label=label, info=r["help"], placeholder="none" if r["optional"] else None
            )
    return inputs


def form_value(value: Any) -> Any:
    """A config value as a text field shows it: lists space-separated, None empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value) if isinstance(value, Path) else value


def build_config(cls: type, fixed: dict[str, Any], names: list[str], values: list[Any]) -> Any:
    """The stage config from fixed values (workspace paths) plus the form's current values."""
    merged = dict(fixed)
    merged.update({n: v for n, v in zip(names, values)})
    return config.from_dict(cls, {k: str(v) if isinstance(v, Path) else v for k, v in merged.items()})


def kept_pick(choices: list[str], current: Any, default: Any = None) -> Any:
    """The user's pick among fresh choices while it is still one of them, else `default`."""
    if isinstance(current, list):  # multiselect
        return [c for c in current if c in choices] or default
    return current if current in choices else default


def choices_update(choices: list[str], value: Any) -> Any:
    """A dropdown update from a handler's (choices, value)."""
    return gr.update(choices=choices, value=value)
