"""PersonaPlex checkpoints load wherever moshiko's do (issue 15): a local folder in PersonaPlex's repo layout,
made here from tiny random models (no downloads), through the loaders, the init stage and generation."""

import json
from pathlib import Path

import pytest
import torch
from moshi.models import loaders
from safetensors.torch import save_file

from backend.models import personaplex
from backend.models.initialise import InitConfig, init_model
from backend.models.source import MIMI_CONFIG, random_mimi, read_lm_kwargs, tiny_lm_kwargs, tiny_mimi_config
from backend.models.weights import lm_kwargs_of, load_lm, load_mimi, source_kwargs


def personaplex_folder(folder: Path, dep_q: int) -> tuple[Path, dict[str, torch.Tensor]]:
    """PersonaPlex's repo layout: model.safetensors, Mimi under moshi's MIMI_NAME, the tokenizer, no
    moshi_lm_kwargs.json; a Kyutai-format config.json carries the tiny architecture (with dep_q 8, which
    PersonaPlex's loader overrides)."""
    folder.mkdir(parents=True)
    torch.manual_seed(dep_q)
    kwargs = tiny_lm_kwargs() | {"dep_q": dep_q}
    lm = loaders.get_moshi_lm(None, lm_kwargs=kwargs, dtype=torch.float32)
    state = {k: v.contiguous() for k, v in lm.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    config = tiny_lm_kwargs() | {
        "moshi_name": "model.safetensors",
        "mimi_name": personaplex.MIMI_FILE,
        "tokenizer_name": personaplex.TOKENIZER_FILE,
        "model_type": "moshi",
    }
    (folder / "config.json").write_text(json.dumps(config))
    mimi = random_mimi(tiny_mimi_config(), seed=1)
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(folder / personaplex.MIMI_FILE))
    (folder / MIMI_CONFIG).write_text(json.dumps(tiny_mimi_config()))
    (folder / personaplex.TOKENIZER_FILE).write_bytes(b"")
    return folder, state


def test_hub_id_kwargs_need_no_download() -> None:
    kwargs = lm_kwargs_of(personaplex.PERSONAPLEX_REPO)
    assert kwargs["dep_q"] == 16 and kwargs["dim"] == 4096 and kwargs["n_q"] == 16
    assert personaplex.is_personaplex("NVIDIA/personaplex-7b-v1")
    assert not personaplex.is_personaplex("kyutai/moshiko-pytorch-bf16")


def test_folder_with_16_steps_loads_as_is(tmp_path: Path) -> None:
    folder, state = personaplex_folder(tmp_path / "pp", dep_q=16)
    assert personaplex.is_personaplex_folder(folder)
    assert lm_kwargs_of(folder)["dep_q"] == 16 and source_kwargs(str(folder))["dep_q"] == 16
    lm = load_lm(folder)
    assert lm.dep_q == 16
    for k, v in lm.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    from backend.inference.generate import load_model

    assert load_model(str(folder)).dep_q == 16
    x = torch.randn(1, 1, 1920 * 3)
    with torch.no_grad():
        codes = load_mimi(folder).encode(x)
    assert codes.shape == (1, 8, 3)


def test_folder_with_8_steps_is_extended_to_16(tmp_path: Path) -> None:
    folder, state = personaplex_folder(tmp_path / "pp8", dep_q=8)
    lm = load_lm(folder)
    assert lm.dep_q == 16
    got = lm.state_dict()
    for i in range(8):  # the user's steps start as copies of Moshi's
        torch.testing.assert_close(got[f"linears.{8 + i}.weight"], state[f"linears.{i}.weight"], rtol=0, atol=0)
        torch.testing.assert_close(got[f"linears.{i}.weight"], state[f"linears.{i}.weight"], rtol=0, atol=0)


def test_init_stage_keeps_dep_q_16(tmp_path: Path) -> None:
    folder, state = personaplex_folder(tmp_path / "pp", dep_q=16)
    out = init_model(InitConfig(source=str(folder), output=tmp_path / "init"))
    assert read_lm_kwargs(out)["dep_q"] == 16
    got = load_lm(out).state_dict()
    for k, v in state.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0)


def test_not_a_personaplex_checkpoint_is_refused(tmp_path: Path) -> None:
    folder, state = personaplex_folder(tmp_path / "pp", dep_q=16)
    save_file({k: v for k, v in state.items() if not k.startswith("linears.")}, str(folder / "model.safetensors"))
    with pytest.raises(Exception, match="depformer output heads"):
        load_lm(folder)


# Runs in PersonaPlex's own vendored moshi (its moshi/moshi package): its LMModel at the tiny size, its weights
# under its own parameter names, and its own forward pass on fixed codes as the reference.
_PERSONAPLEX_SAVE = """
import json, sys, torch
from moshi.models.lm import LMModel
from safetensors.torch import save_file
kwargs, weights, codes_file, logits_file = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
torch.manual_seed(0)
lm = LMModel(device="cpu", dtype=torch.float32, **kwargs).eval()
save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, weights)
with torch.no_grad():
    out = lm.forward_train(torch.load(codes_file))
torch.save({"logits": out.logits, "text_logits": out.text_logits}, logits_file)
print(json.dumps(sorted(k for k in lm.state_dict() if "self_attn" in k)))
"""


@pytest.mark.parametrize("dep_q", [16, 8])
def test_weights_under_personaplex_own_names_load(tmp_path: Path, dep_q: int) -> None:
    from tests.upstream_helpers import run_upstream, upstream_tree

    vendored = upstream_tree("NVIDIA/personaplex", "moshi/moshi", tmp_path / "personaplex")
    folder, _ = personaplex_folder(tmp_path / "pp", dep_q=dep_q)
    kwargs = tiny_lm_kwargs() | {"dep_q": dep_q}
    codes = torch.cat([torch.randint(0, 32000, (1, 1, 5)), torch.randint(0, 2048, (1, 16, 5))], dim=1)
    torch.save(codes, tmp_path / "codes.pt")
    done = run_upstream(
        _PERSONAPLEX_SAVE,
        vendored.parent,
        json.dumps(kwargs),
        str(folder / "model.safetensors"),
        str(tmp_path / "codes.pt"),
        str(tmp_path / "logits.pt"),
    )
    names = json.loads(done.stdout.strip().splitlines()[-1])
    assert "transformer.layers.0.self_attn.in_proj_weight" in names  # its own names, not moshi's current ones
    reference = torch.load(tmp_path / "logits.pt")
    lm = load_lm(folder)
    assert lm.dep_q == 16
    with torch.no_grad():
        out = lm(codes)
    torch.testing.assert_close(out.text_logits, reference["text_logits"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.logits[:, :dep_q], reference["logits"], rtol=1e-4, atol=1e-5, equal_nan=True)
