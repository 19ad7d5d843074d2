"""Every setting of every stage through the stage's real command line (issue 23: `--no-whitespace` once turned
no-whitespace mode off, and the tests, which called the functions, did not see it).

Commands are found, not listed: each entry's `main` runs with argparse stopped at its first parse, and every
parser `config.cli_parser` built on the way is a command with its config class (`runs start`, `preprocess start
annotate`, ...). A new stage, subcommand or field is covered as it is written; a new command only needs the
function that receives its config named in RECEIVERS (a test says so until it is).
"""

import argparse
import contextlib
import dataclasses
import importlib
import io
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from backend import cli
from backend.core import config
from backend.core.errors import ConfigError

# Entry points: every stage of `moshi-studio`, plus the preprocessing runs (`python -m backend.dataset.preprocess`).
ENTRIES = {**{name: stage.module for name, stage in cli.STAGES.items()}, "preprocess": "backend.dataset.preprocess"}

# The function each command hands its config to ("module:attribute"), by the longest leading words of the command.
RECEIVERS = {
    "annotate": "backend.data.annotate.run:check_config",
    "validate": "backend.data.validate:report",
    "join-mono": "backend.data.mono_pair:join_mono",
    "tokenize-audio": "backend.dataset.tokenize_audio:tokenize_audio",
    "tokenize-text": "backend.dataset.tokenize_text:tokenize_text",
    "tokenizer inspect": "backend.dataset.tokenizer_cli:inspect_tokenizer",
    "tokenizer train": "backend.dataset.tokenizer_cli:train_tokenizer",
    "build-dataset": "backend.dataset.build:build_dataset",
    "personas": "backend.dataset.personas:set_persona",
    "timeline": "backend.dataset.timeline:show",
    "init": "backend.models.initialise:init_model",
    "runs start": "backend.finetune.runs:start_new",
    "runs show": "backend.core.config:from_cli",  # show reads its one setting where it parses it
    "export": "backend.models.export:export_checkpoint",
    "generate": "backend.inference.generate:generate",
    "turn-taking": "backend.inference.turn_taking:run",
    "chat-server": "backend.inference.chat_server:access_of",  # the first to get the whole ChatServerConfig
    "evaluate start": "backend.evaluate.job:create_run",
    "probes": "backend.demo.probes:from_cli",
    "demo-dialogues": "backend.demo.dialogues:generate",
    "codec-training": "backend.demo.codec_training:train_codec",
    "preprocess start": "backend.dataset.preprocess:start_new",
    "preprocess preview": "backend.dataset.preprocess:absolute",
}
# What runs before the receiver and needs real files: a run, a workspace.
STUBS = {"runs show": ["backend.finetune.runs:open_run"], "evaluate start": ["backend.evaluate.job:open_workspace"]}


class Command(NamedTuple):
    words: tuple[str, ...]  # entry, then subcommands: ("runs", "start")
    cls: type
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join(self.words)


class _Built(Exception):
    """Raised at the first parse: every parser of the entry is built by then."""


class _Received(Exception):
    def __init__(self, cfg: Any):
        self.cfg = cfg


def commands(entry: str, monkeypatch: pytest.MonkeyPatch) -> list[Command]:
    found: list[tuple[type, argparse.ArgumentParser]] = []
    real = config.cli_parser

    def spy(cls: type, description: str, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
        found.append((cls, real(cls, description, parser)))
        return found[-1][1]

    def stop(*args: Any, **kwargs: Any) -> None:
        raise _Built

    module = importlib.import_module(ENTRIES[entry])
    with monkeypatch.context() as m:
        m.setattr(sys, "argv", [f"moshi-studio {entry}"])  # as backend.cli sets it: parsers are named after it
        m.setattr(config, "cli_parser", spy)
        if getattr(module, "cli_parser", None) is real:  # `from backend.core.config import cli_parser`
            m.setattr(module, "cli_parser", spy)
        m.setattr(argparse.ArgumentParser, "parse_args", stop)
        with pytest.raises(_Built):
            module.main([])
    return [Command(tuple(p.prog.split()[1:]), cls, p) for cls, p in found]


def run_entry(entry: str, argv: list[str]) -> int:
    """The entry's real command line: `moshi-studio <stage> ...`, or the module's main for the others."""
    return cli.main([entry, *argv]) if entry in cli.STAGES else importlib.import_module(ENTRIES[entry]).main(argv)


def attribute(target: str) -> tuple[Any, str]:
    module, name = target.split(":")
    return importlib.import_module(module), name


def received(cmd: Command, flags: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The config the command hands on when run with `flags` (plus a placeholder for each positional)."""
    keys = [k for k in RECEIVERS if cmd.words[: len(k.split())] == tuple(k.split())]
    assert keys, f"{cmd.name}: name the function that receives its config in RECEIVERS"
    key = max(keys, key=len)
    module, name = attribute(RECEIVERS[key])
    real = getattr(module, name)
    parses = real is config.from_cli  # receives (class, args): its result is the config

    def receive(*args: Any, **kwargs: Any) -> None:
        if parses:
            raise _Received(real(*args, **kwargs))
        configs = [a for a in (*args, *kwargs.values()) if isinstance(a, cmd.cls)]
        assert configs, f"{RECEIVERS[key]} got no {cmd.cls.__name__}"
        raise _Received(configs[0])

    positionals = [
        a for a in cmd.parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]
    argv = [*cmd.words[1:], *("placeholder" for _ in positionals), *flags]
    err = io.StringIO()
    with monkeypatch.context() as m, contextlib.redirect_stderr(err):
        m.setattr(sys, "argv", [f"moshi-studio {cmd.words[0]}"])
        for stub in STUBS.get(key, []):
            m.setattr(*attribute(stub), lambda *args, **kwargs: None)
        m.setattr(module, name, receive)
        try:
            status = run_entry(cmd.words[0], argv)
        except _Received as r:
            return r.cfg
        except SystemExit as e:
            status = e.code
    pytest.fail(f"{cmd.name} {' '.join(argv)}: exit status {status} before {RECEIVERS[key]}:\n{err.getvalue()}")


def cli_fields(cls: type) -> list[dict[str, Any]]:
    names = {f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    return [row for row in config.describe(cls) if row["name"] in names]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def other_value(row: dict[str, Any]) -> Any:
    """A valid value of a field that is not its default: bool flipped, another choice, a number within the
    field's bounds, another path or text, another list."""
    default, kind = row["default"], row["type"]
    if row["choices"]:
        return next(c for c in row["choices"] if c != default)
    if kind is bool:
        return not default
    if kind in (int, float):
        start = default if default is not None else row["bounds"].get("ge", row["bounds"].get("gt", 0))
        steps = (1, -1, 2) if kind is int else (0.5, -0.5, 0.25)
        inside = [start + s for s in steps if all(config.BOUNDS[k][1](start + s, b) for k, b in row["bounds"].items())]
        assert inside, f"{row['name']}: no value near {start} within {row['bounds']}"
        return inside[0]
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return {int: [1, 2], str: ["one", "two"]}[item]
    if kind in (str, Path):
        return kind(f"{default}-other" if default else "other")
    raise AssertionError(f"{row['name']}: no other value for a {kind}")


def flags_for(name: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        return [flag(name) if value else "--no-" + flag(name)[2:]]
    if isinstance(value, list):
        return [flag(name), *map(str, value)]
    return [flag(name), repr(value) if isinstance(value, float) else str(value)]


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_boolean_flag_and_its_negation_do_what_they_say(
    entry: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--x` gives True, `--no-x` False, and a value from `--config FILE` stays when neither flag is given."""
    wrong = []
    for cmd in commands(entry, monkeypatch):
        for row in cli_fields(cmd.cls):
            if row["type"] is not bool:
                continue
            name, saved = row["name"], tmp_path / f"{row['name']}.json"
            saved.write_text(json.dumps({name: not row["default"]}))
            for flags, expected in (
                ([flag(name)], True),
                (["--no-" + flag(name)[2:]], False),
                (["--config", str(saved)], not row["default"]),
            ):
                got = getattr(received(cmd, flags, monkeypatch), name)
                if got is not expected:
                    wrong.append(f"{cmd.name} {' '.join(flags)}: {name} = {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_non_default_value_of_every_field_reaches_the_stage(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = []
    for cmd in commands(entry, monkeypatch):
        values = {row["name"]: other_value(row) for row in cli_fields(cmd.cls)}
        cfg = received(cmd, [f for name, v in values.items() for f in flags_for(name, v)], monkeypatch)
        wrong += [
            f"{cmd.name}: {name} = {getattr(cfg, name)!r}, expected {v!r}"
            for name, v in values.items()
            if getattr(cfg, name) != v
        ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_command_prints_its_help(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for cmd in commands(entry, monkeypatch):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
            run_entry(cmd.words[0], [*cmd.words[1:], "--help"])
        assert exit.value.code == 0 and all(flag(row["name"]) in out.getvalue() for row in cli_fields(cmd.cls))


def test_saved_text_settings_with_the_old_no_whitespace_still_load(tmp_path: Path) -> None:
    from backend.dataset.tokenize_text import TextTokenizeConfig

    for old, whitespace in ((True, False), (False, True)):
        assert config.from_dict(TextTokenizeConfig, {"no_whitespace": old}).whitespace is whitespace
        (tmp_path / "old.json").write_text(json.dumps({"no_whitespace": old}))
        assert config.load(TextTokenizeConfig, tmp_path / "old.json").whitespace is whitespace
    with pytest.raises(ConfigError, match="no_whitespace.*whitespace"):
        config.from_dict(TextTokenizeConfig, {"no_whitespace": True, "whitespace": True})


def test_a_boolean_field_named_no_something_is_refused_with_the_fix() -> None:
    @dataclass
    class Negative:
        no_thing: bool = config.option(False, "a negative name")

    with pytest.raises(TypeError, match="--no-no-thing.*thing"):
        config.cli_parser(Negative, "negative")
