"""The tokenizer's record (backend.models.text_tokenizer) in text audits, the dataset and initialised models, and
the refusals of init, training, continuations and chat when model, dataset and tokenizer disagree."""

import dataclasses
import json
from pathlib import Path

import pytest

from backend.core.errors import ConfigError
from backend.dataset.build import DatasetConfig, build_dataset
from backend.dataset.spm import train_spm
from backend.dataset.token_folders import audits_beside
from backend.demo.dialogues import demo_sentences
from backend.demo.workspace import DEMO_VOCAB_SIZE, create_demo_workspace
from backend.models.text_tokenizer import (
    RECORD_FILE,
    TokenizerRecord,
    check_agreement,
    fingerprint,
    load_spm,
    read_record,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """A Japanese demo workspace after Build and Initialise, and an English tokenizer beside it."""
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig
    from backend.models.initialise import InitConfig, init_model

    root = tmp_path_factory.mktemp("agree")
    ws = create_demo_workspace(root / "ws", random_codec=True, language="ja")
    prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    ja_init = init_model(
        InitConfig(
            source=str(ws.demo_lm), output=ws.models / "ja-init", user_stream=False, tokenizer=str(ws.tokenizer_path)
        )
    )
    english = train_spm(demo_sentences(), root / "en.model", vocab_size=DEMO_VOCAB_SIZE)
    return {"ws": ws, "ja_init": ja_init, "en": english, "root": root}


def test_audits_dataset_and_initialised_model_record_the_tokenizer(setup: dict) -> None:  # type: ignore[type-arg]
    ws = setup["ws"]
    printed = fingerprint(load_spm(ws.tokenizer_path))
    audit = json.loads((audits_beside(ws.tokens_text) / "ja_cafe.audit.json").read_text(encoding="utf-8"))
    assert audit["tokenizer"]["fingerprint"] == printed and audit["tokenizer"]["pad_id"] == 3
    for folder in (ws.dataset, setup["ja_init"]):
        record = read_record(folder)
        assert record is not None and (record.fingerprint, record.pad_id, record.epad_id) == (printed, 3, 0)


def test_build_refuses_rows_of_two_tokenizers_and_another_pad(setup: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    ws = setup["ws"]
    audit = audits_beside(ws.tokens_text) / "ja_cafe.audit.json"
    kept = audit.read_text(encoding="utf-8")
    cfg = DatasetConfig(audio_tokens=ws.tokens_audio, text_tokens=ws.tokens_text, output=tmp_path)
    try:
        data = json.loads(kept)
        data["tokenizer"]["fingerprint"] = "0123456789abcdef"
        audit.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(
            ConfigError, match="different tokenizers: text tokens of ja_cafe has tokenizer 0123456789abcdef"
        ):
            build_dataset(cfg)
        audit.write_text(kept, encoding="utf-8")
        with pytest.raises(ConfigError, match="pad_id 5: the text tokens use PAD 3"):
            build_dataset(dataclasses.replace(cfg, pad_id=5))
        build_dataset(cfg)
        assert (tmp_path / RECORD_FILE).is_file()
        data = json.loads(kept)
        del data["tokenizer"]  # tokens made before records: no record, and an old one is not left to vouch
        audit.write_text(json.dumps(data), encoding="utf-8")
        build_dataset(cfg)
        assert not (tmp_path / RECORD_FILE).exists()
    finally:
        audit.write_text(kept, encoding="utf-8")


def test_init_refuses_another_tokenizer_unless_the_text_embeddings_are_reinitialised(setup: dict) -> None:  # type: ignore[type-arg]
    from backend.models.initialise import InitConfig, init_model

    cfg = InitConfig(source=str(setup["ja_init"]), output=setup["root"] / "en-init", tokenizer=str(setup["en"]))
    with pytest.raises(
        ConfigError,
        match="different tokenizers: tokenizer .*en.model has .* the source .* has .*--reinit-text-embeddings",
    ):
        init_model(cfg)
    assert not cfg.output.exists()
    out = init_model(dataclasses.replace(cfg, reinit_text_embeddings=True))  # J-Moshi's path to a new tokenizer
    assert read_record(out).fingerprint == fingerprint(load_spm(setup["en"]))


def test_a_vocabulary_larger_than_the_text_card_or_other_pad_ids_are_refused() -> None:
    big = TokenizerRecord("a" * 16, 48000, 3, 0, "big.model")
    with pytest.raises(ConfigError, match="more pieces than the model's text card"):
        check_agreement({"tokenizer big.model": big}, text_card=32000)
    with pytest.raises(ConfigError, match="PAD 3 / EPAD 0, but the model's are PAD 1 / EPAD 2"):
        check_agreement({"dataset d": dataclasses.replace(big, vocab_size=400)}, text_card=32000, model_pad=(1, 2))
    with pytest.raises(ConfigError, match="PAD 3 / EPAD 0, model m PAD 1 / EPAD 0"):
        check_agreement({"dataset d": big, "model m": dataclasses.replace(big, pad_id=1)})


def test_training_continuations_and_chat_refuse_a_model_of_another_tokenizer(setup: dict) -> None:  # type: ignore[type-arg]
    from backend.finetune import runs
    from backend.finetune.config import FinetuneConfig
    from backend.finetune.presets import PRESETS
    from backend.inference.chat_config import ChatConfig
    from backend.inference.chat_engine import ChatEngine
    from backend.inference.generate import GenerateConfig, generate

    ws, en_init = setup["ws"], setup["root"] / "en-init"
    if not en_init.exists():
        pytest.skip("needs the English re-initialised model of the init test")
    preset = dataclasses.replace(FinetuneConfig(), **next(iter(PRESETS.values())), user_stream=False)  # dep_q 8 models
    with pytest.raises(ConfigError, match="different tokenizers: model .*en-init has tokenizer .*, train_data .* has"):
        runs.validate_before_launch(dataclasses.replace(preset, base_model=str(en_init)), ws.root)
    runs.validate_before_launch(dataclasses.replace(preset, base_model=str(setup["ja_init"])), ws.root)
    with pytest.raises(ConfigError, match="model .*en-init has .*, dataset .* has"):
        generate(GenerateConfig(model=str(en_init), dataset=ws.dataset, output=None, prompt_frames=10, gen_frames=2))
    with pytest.raises(ConfigError, match="model .*en-init has .*, tokenizer .* has"):
        ChatEngine(ChatConfig(model=str(en_init), mimi=str(ws.demo_mimi), tokenizer=str(ws.tokenizer_path)))


def test_the_studio_initialise_records_the_workspace_tokenizer(setup: dict) -> None:  # type: ignore[type-arg]
    from studio.finetune_tab import INIT_FIELDS, init_values, on_init

    ws = setup["ws"]
    values = dict(zip(INIT_FIELDS, init_values(ws))) | {"output": "models/studio-init", "user_stream": False}
    message = on_init(ws, *values.values())
    assert message.startswith("✔"), message
    assert read_record(ws.models / "studio-init").fingerprint == fingerprint(load_spm(ws.tokenizer_path))
