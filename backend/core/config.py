"""One config object per stage: a dataclass whose fields carry their help text.

The same dataclass builds the CLI (`cli_parser`), is filled by the studio's forms (`from_dict`)
and is saved next to every output (`to_dict`), so there is no second list of flags anywhere.
Declare fields with `option(default, "help", choices=..., ge=..., le=...)`; `check_numbers` refuses values
outside those bounds, non-finite floats and integers no int64 holds, naming the field. Boolean fields are named
positively (argparse makes `--no-x` the negation of `x`); a renamed field lists its former name in the class's
`RENAMED: ClassVar[dict[str, Renamed]]`, so saved configs that use it still load.
"""

import argparse
import dataclasses
import json
import math
import numbers
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from backend.core.errors import ConfigError

C = TypeVar("C")


INT_LIMIT = 2**63 - 1  # every integer setting fits an int64 (torch, NumPy, Parquet)
BOUNDS = {
    "ge": (">=", lambda v, b: v >= b),
    "gt": (">", lambda v, b: v > b),
    "le": ("<=", lambda v, b: v <= b),
    "lt": ("<", lambda v, b: v < b),
}


def option(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    cli: bool = True,
    form: bool = True,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A config field with its help text (shown in --help and as the studio's field info) and, for numbers,
    its bounds (ge: >=, gt: >, le: <=, lt: <), checked by `check_numbers`. `cli=False`: no flag; `form=False`:
    no input in the studio's forms (a setting only the command line may give, such as a file it writes)."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    meta = {"help": help, "choices": choices, "cli": cli, "form": form, "bounds": bounds}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Renamed:
    """The new name of a former field; `negated` when the new field means the opposite (`no_x` -> `x`)."""

    name: str
    negated: bool = False


def _renamed(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the class's former field names (its RENAMED) replaced by the current ones."""
    values = dict(values)
    for old, new in getattr(cls, "RENAMED", {}).items():
        if old not in values:
            continue
        if new.name in values:
            raise ConfigError(f"{old} (the former name of {new.name}) and {new.name} are both set: keep {new.name}")
        value = values.pop(old)
        values[new.name] = not _convert(value, bool, old) if new.negated else value
    return values


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) of a field annotation such as `int | None`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def field_choices(f: dataclasses.Field, tp: Any) -> tuple | None:
    base, _ = _base_type(tp)
    if typing.get_origin(base) is Literal:
        return typing.get_args(base)
    return f.metadata.get("choices")


def _convert(value: Any, tp: Any, name: str) -> Any:
    base, optional = _base_type(tp)
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    if typing.get_origin(base) is Literal:
        if value not in typing.get_args(base):
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, typing.get_args(base)))}")
        return value
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if base in (int, float, str):
            if base is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return base(value)
        if base is Path:
            return Path(value)
        if typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            return [_convert(v, item, name) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}: {_short(value)} is not a valid {getattr(base, '__name__', base)}") from None
    return value


def _short(value: Any) -> str:
    """repr of a value, cut short (a hostile file may hold a 401-digit number)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"


def check_numbers(cfg: Any) -> None:
    """Refuse a number outside its field's bounds, a NaN or infinite float, or an integer beyond int64,
    with a message naming the field (values come from forms, files and flags: any of them may be absurd)."""
    for f in dataclasses.fields(cfg):
        values = getattr(cfg, f.name)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
            for kind, bound in f.metadata.get("bounds", {}).items():
                symbol, holds = BOUNDS[kind]
                if not holds(value, bound):
                    raise ConfigError(f"{f.name} must be {symbol} {bound}, got {_short(value)}")
            if isinstance(value, int) and abs(value) > INT_LIMIT:
                raise ConfigError(f"{f.name} is out of range: {_short(value)}")


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a config from loose values (strings from a form, JSON); unknown keys are an error, former names
    (the class's RENAMED) are read as the current ones."""
    values = _renamed(cls, values)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    kwargs = {k: _convert(v, hints[k], k) for k, v in values.items()}
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if choices and f.name in kwargs and kwargs[f.name] not in choices:
            raise ConfigError(f"{f.name}: {kwargs[f.name]!r} is not one of {', '.join(map(str, choices))}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config (paths as strings)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out


def save(cfg: Any, path: str | Path) -> None:
    from backend.core.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(to_dict(cfg), indent=2) + "\n")


def load(cls: type[C], path: str | Path) -> C:
    """A config from a JSON file; every problem is a ConfigError naming the file."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad JSON, bad UTF-8, an integer of over 4300 digits
        raise ConfigError(f"{path}: cannot read the configuration ({e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: cannot read the configuration (JSON nested too deeply)") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a configuration file holds one JSON object")
    try:
        return from_dict(cls, values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def cli_parser(cls: type, description: str, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one --flag per field of `cls` (plus --config FILE)."""
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=Path, default=None, help="read settings from this JSON file first")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        base, _ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")  # argparse formats %
        if base is bool:
            if f.name.startswith("no_"):
                raise TypeError(
                    f"{cls.__name__}.{f.name}: argparse would make {flag} and --no-{flag[2:]}, which both "
                    f"set False; name the field positively ({f.name[3:]}) and list {f.name} in its "
                    f"RENAMED as Renamed({f.name[3:]!r}, negated=True)"
                )
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(
                flag,
                dest=f.name,
                default=None,
                choices=field_choices(f, hints[f.name]),
                nargs="+" if typing.get_origin(base) is list else None,
                help=help_text,
            )
    return parser


def from_cli(cls: type[C], args: argparse.Namespace, base: dict[str, Any] | None = None) -> C:
    """Config from parsed args: defaults < `base` (a preset) < --config file < explicit flags."""
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None) is not None:
        values.update(dataclasses.asdict(load(cls, args.config)))
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return from_dict(cls, values)


def form_fields(cls: type) -> list[str]:
    """The fields the studio's forms offer, in declaration order (all but those declared with form=False)."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("form", True)]


def choices(cls: type, name: str) -> tuple:
    """The allowed values of one field (its Literal, or its `choices`), for a widget that offers them."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field_choices(f, typing.get_type_hints(cls)[name]) or ()


def describe(cls: type) -> list[dict[str, Any]]:
    """Field descriptions for building forms: name, type, default, help, choices, bounds."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        base, optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append(
            {
                "name": f.name,
                "type": base,
                "optional": optional,
                "default": default,
                "help": f.metadata.get("help", ""),
                "choices": field_choices(f, hints[f.name]),
                "bounds": f.metadata.get("bounds", {}),
            }
        )
    return rows
