"""Init stage: user-stream extension copies exactly, keeps Moshi's logits, text re-init, 7B proof on meta."""

import copy
import json
from pathlib import Path

import pytest
import torch
from moshi.models import loaders
from safetensors.torch import load_file, save_file
from surgery_helpers import logits_of, tiny_source

from backend.core.errors import ConfigError, InputError
from backend.models.initialise import InitConfig, init_model, main
from backend.models.source import LM_KWARGS, LM_WEIGHTS
from backend.models.surgery import parameter_report
from backend.models.weights import load_lm


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_source(tmp_path_factory.mktemp("src") / "demo-lm")


@pytest.fixture(scope="module")
def extended(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model(InitConfig(source=str(source), output=tmp_path_factory.mktemp("init") / "lm16"))


def test_extension_copies_moshi_steps(source: Path, extended: Path) -> None:
    old, new = load_file(str(source / LM_WEIGHTS)), load_file(str(extended / LM_WEIGHTS))
    kwargs = json.loads((extended / LM_KWARGS).read_text())
    old_kwargs = json.loads((source / LM_KWARGS).read_text())
    assert kwargs["dep_q"] == 16 and kwargs["depformer_context"] == 16
    assert kwargs["delays"] == old_kwargs["delays"] and len(kwargs["delays"]) == 17
    # Written out per moshi's module layout, independently of lm_surgery's regex.
    expected_copies = {}
    for i in range(8):
        for name in ("depformer_in.{}.weight", "linears.{}.weight"):
            expected_copies[name.format(i + 8)] = name.format(i)
        for layer in range(old_kwargs["depformer_num_layers"]):
            for part in (
                "self_attn.in_projs.{}.weight",
                "self_attn.out_projs.{}.weight",
                "gating.{}.linear_in.weight",
                "gating.{}.linear_out.weight",
            ):
                key = f"depformer.layers.{layer}." + part
                expected_copies[key.format(i + 8)] = key.format(i)
    for i in range(7):  # depformer_emb[i] embeds Moshi codebook i for step i+1
        expected_copies[f"depformer_emb.{i + 8}.weight"] = f"depformer_emb.{i}.weight"
    # depformer_emb[7] embeds Moshi's codebook 7 for the step predicting user codebook 0 (J-Moshi: copy of [0])
    expected_copies["depformer_emb.7.weight"] = "depformer_emb.0.weight"
    assert set(new) == set(old) | set(expected_copies)
    for key, src in expected_copies.items():
        assert torch.equal(new[key], old[src]), key
    for key in old:
        assert torch.equal(new[key], old[key]), key
    # The folder is exactly what a fresh dep_q 16 LMModel expects (moshi's strict loader).
    fresh = loaders.get_moshi_lm(None, lm_kwargs=kwargs, device="meta").state_dict()
    assert {k: v.shape for k, v in fresh.items()} == {k: v.shape for k, v in new.items()}


def test_extended_model_keeps_moshi_logits(source: Path, extended: Path) -> None:
    text_old, audio_old = logits_of(load_lm(source))
    text_new, audio_new = logits_of(load_lm(extended))
    assert audio_old.shape[1] == 8 and audio_new.shape[1] == 16
    torch.testing.assert_close(text_new, text_old, equal_nan=True)
    torch.testing.assert_close(audio_new[:, :8], audio_old, equal_nan=True, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(audio_new[:, 8:, :-1]).all()  # the user steps predict real logits


def test_user_stream_on_an_extended_model_is_a_no_op(extended: Path, tmp_path: Path) -> None:
    again = init_model(InitConfig(source=str(extended), output=tmp_path / "again"))
    a, b = load_file(str(extended / LM_WEIGHTS)), load_file(str(again / LM_WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_text_reinit_keeps_listed_rows_and_matches_statistics(source: Path, tmp_path: Path) -> None:
    old = load_file(str(source / LM_WEIGHTS))
    keep = [0, 3, 32000]
    outs = {}
    for name, scale, seed in (("a", 1e-5, 0), ("b", 1e-5, 0), ("c", 1.0, 1)):
        out = init_model(
            InitConfig(
                source=str(source),
                output=tmp_path / name,
                user_stream=False,
                reinit_text_embeddings=True,
                keep_text_ids=keep,
                reinit_cov_scale=scale,
                seed=seed,
            )
        )
        outs[name] = load_file(str(out / LM_WEIGHTS))
    for key in ("text_emb.weight", "depformer_text_emb.weight"):
        before, after, wide = old[key], outs["a"][key], outs["c"][key]
        others = torch.ones(before.shape[0], dtype=torch.bool)
        others[keep] = False
        assert torch.equal(after[keep], before[keep]) and torch.equal(wide[keep], before[keep])
        assert (after[others] != before[others]).any(dim=1).all()  # every other row is new
        assert torch.equal(outs["b"][key], after)  # seeded
        spread = before.std(dim=0)
        assert ((after[others].mean(0) - before.mean(0)).abs() < 0.05 * spread).all()
        assert ((wide[others].mean(0) - before.mean(0)).abs() < 0.05 * spread).all()
        ratio = wide[others].var(dim=0) / before.var(dim=0)  # full-scale covariance: same spread
        assert ((ratio > 0.9) & (ratio < 1.1)).all()
        assert (after[others].std(dim=0) < 0.01 * spread).all()  # J-Moshi's 1e-5: near the mean
    for key in old:  # nothing else changed
        if key not in ("text_emb.weight", "depformer_text_emb.weight"):
            assert torch.equal(outs["a"][key], old[key])


def _architecture_params(kw: dict, dep_q: int) -> int:
    """Parameter count of moshi's LMModel from its kwargs, from the module formulas (rms norms, silu gating)."""
    dim, ddim, card, text_card = kw["dim"], kw["depformer_dim"], kw["card"], kw["text_card"]

    def gating(d: int, ff: int) -> int:
        hidden = (21 * d) // 8 if ff == 4 * d else (2 * ff) // 3
        return d * 2 * hidden + hidden * d

    main_layer = 2 * dim + 4 * dim * dim + gating(dim, int(kw["hidden_scale"] * dim))
    dep_step = 4 * ddim * ddim + gating(ddim, kw["depformer_dim_feedforward"])
    return (
        kw["n_q"] * (card + 1) * dim
        + (text_card + 1) * dim
        + dim * text_card
        + kw["num_layers"] * main_layer
        + dim
        + dep_q * dim * ddim
        + (dep_q - 1) * (card + 1) * ddim
        + (text_card + 1) * ddim
        + kw["depformer_num_layers"] * (2 * ddim + dep_q * dep_step)
        + dep_q * ddim * card
    )


def test_7b_architecture_on_meta_device() -> None:
    kw = copy.deepcopy(loaders._lm_kwargs)
    report = parameter_report(kw)
    assert report["base"] == _architecture_params(kw, 8) == 7_687_729_152
    assert report["init"] == report["fresh"] == _architecture_params(kw, 16)
    assert report["clean"] == report["base"]
    assert report["added"] == _architecture_params(kw, 16) - _architecture_params(kw, 8)
    assert loaders._lm_kwargs == kw  # the module-level defaults were not touched


def test_cli_help_and_bad_inputs(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--user-stream" in capsys.readouterr().out

    missing = tmp_path / "nope"
    assert main(["--source", str(missing), "--output", str(tmp_path / "o")]) == 2
    assert f"{missing}: neither a model folder" in capsys.readouterr().err

    alien = tmp_path / "alien"
    alien.mkdir()
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(alien / LM_WEIGHTS))
    (alien / LM_KWARGS).write_text((source / LM_KWARGS).read_text())
    with pytest.raises(InputError, match="not a moshi LM checkpoint.*missing parameter"):
        init_model(InitConfig(source=str(alien), output=tmp_path / "o"))

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not the output of an earlier init"):
        init_model(InitConfig(source=str(source), output=busy))
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="outside the 32001"):
        init_model(
            InitConfig(source=str(source), output=tmp_path / "o", reinit_text_embeddings=True, keep_text_ids=[40000])
        )
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_output_is_replaced_whole_or_not_at_all(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = init_model(InitConfig(source=str(source), output=tmp_path / "lm", user_stream=False))
    before = (out / LM_WEIGHTS).read_bytes()

    def broken_save(model: torch.nn.Module, kwargs: dict, folder: Path) -> None:
        (folder / LM_WEIGHTS).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr("backend.models.initialise.save_lm", broken_save)
    with pytest.raises(OSError, match="disk full"):
        init_model(InitConfig(source=str(source), output=out))
    assert (out / LM_WEIGHTS).read_bytes() == before and json.loads((out / LM_KWARGS).read_text())["dep_q"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["lm"]  # no temporary folder left behind
    monkeypatch.undo()
    init_model(InitConfig(source=str(source), output=out))  # a model folder is replaced whole
    assert json.loads((out / LM_KWARGS).read_text())["dep_q"] == 16
    assert [p.name for p in tmp_path.iterdir()] == ["lm"]
