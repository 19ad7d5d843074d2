"""Export stage: full / clean / LoRA (merged and not) / ZeRO checkpoints -> folders moshi's loaders serve,
with the training model's logits."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, free_port
from moshi.models import loaders
from moshi.modules.lora import replace_all_linear_with_lora
from safetensors.torch import load_file, save_file
from surgery_helpers import logits_of, tiny_source

from backend.core import config
from backend.core.errors import ConfigError, InputError
from backend.finetune.config import FinetuneConfig
from backend.models.export import ExportConfig, export_checkpoint, main
from backend.models.initialise import InitConfig, init_model
from backend.models.source import LM_KWARGS, LM_WEIGHTS, save_lm
from backend.models.weights import load_lm

LORA_RANK, LORA_SCALING = 4, 2.0


def load_export(out: Path, lora: bool = False) -> torch.nn.Module:
    """The export as `moshi.server` loads it: CheckpointInfo from local paths only (nothing downloaded)."""
    info = loaders.CheckpointInfo.from_hf_repo(
        "local/not-downloaded",
        moshi_weights=out / "model.safetensors",
        mimi_weights=out / "no-mimi",
        tokenizer=out / "no-tokenizer",
        config_path=out / "config.json",
        lora_weights=out / "lora.safetensors" if lora else None,
    )
    return info.get_moshi(device="cpu", dtype=torch.float32)


def checkpoint_dir(run: Path, base: Path, mode: str = "full") -> Path:
    """A run folder laid out as backend.finetune.trainer writes it; returns its checkpoint folder."""
    cfg = config.from_dict(
        FinetuneConfig, {"base_model": str(base), "mode": mode, "lora_rank": LORA_RANK, "lora_scaling": LORA_SCALING}
    )
    config.save(cfg, run / "config.json")
    ckpt = run / "checkpoints" / "step-000003"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": 3, "base_model": str(base), "mode": mode}))
    return ckpt


@pytest.fixture(scope="module")
def base16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    return init_model(InitConfig(source=str(tiny_source(root / "demo-lm")), output=root / "init16"))


@pytest.fixture(scope="module")
def trained(base16: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A 'trained' full checkpoint: every weight moved, so user steps differ from Moshi's."""
    model = load_lm(base16)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    ckpt = checkpoint_dir(tmp_path_factory.mktemp("run-full"), base16)
    save_lm(model, json.loads((base16 / LM_KWARGS).read_text()), ckpt)
    return ckpt, model


@pytest.fixture(scope="module")
def lora_trained(base16: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A LoRA checkpoint as the trainer writes it: lora.safetensors (adapters only, B != 0) + base reference."""
    model = load_lm(base16)
    replace_all_linear_with_lora(model, LORA_RANK, LORA_SCALING)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    ckpt = checkpoint_dir(tmp_path_factory.mktemp("run-lora"), base16, mode="lora")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items() if ".lora_" in k}, str(ckpt / "lora.safetensors")
    )
    kwargs = json.loads((base16 / LM_KWARGS).read_text())
    (ckpt / LM_KWARGS).write_text(
        json.dumps(kwargs | {"lora": True, "lora_rank": LORA_RANK, "lora_scaling": LORA_SCALING})
    )
    return ckpt, model


def test_full_export_round_trip(trained: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    ckpt, model = trained
    out = export_checkpoint(ExportConfig(checkpoint=ckpt, output=tmp_path / "full", clean=False, dtype="float32"))
    served = json.loads((out / "config.json").read_text())
    assert served["dep_q"] == 16 and served["lora"] is False
    text, audio = logits_of(load_export(out))
    text_ref, audio_ref = logits_of(model)
    torch.testing.assert_close(text, text_ref, equal_nan=True)
    torch.testing.assert_close(audio, audio_ref, equal_nan=True)


def test_clean_export_serves_moshi_steps(
    trained: tuple[Path, torch.nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, model = trained
    assert main(["--checkpoint", str(ckpt), "--dtype", "float32"]) == 0
    out = ckpt.parent.parent / "exports" / ckpt.name  # the default output
    assert "python -m moshi.server --moshi-weight" in capsys.readouterr().out
    served = json.loads((out / "config.json").read_text())
    assert served["dep_q"] == 8 and served["depformer_context"] == 8 and served["lora"] is False
    assert served["moshi_name"] == "model.safetensors" and served["mimi_name"] == loaders.MIMI_NAME
    assert served["tokenizer_name"] == loaders.TEXT_TOKENIZER_NAME
    assert json.loads((out / LM_KWARGS).read_text())["dep_q"] == 8
    text, audio = logits_of(load_export(out))
    text_ref, audio_ref = logits_of(model)
    assert audio.shape[1] == 8
    torch.testing.assert_close(text, text_ref, equal_nan=True)
    torch.testing.assert_close(audio, audio_ref[:, :8], equal_nan=True, atol=1e-5, rtol=1e-5)
    # The default dtype is bf16 for serving; it loads and stays close.
    bf16 = export_checkpoint(ExportConfig(checkpoint=ckpt, output=tmp_path / "bf16"))
    assert {v.dtype for v in load_file(str(bf16 / LM_WEIGHTS)).values()} == {torch.bfloat16}
    text16, _ = logits_of(load_export(bf16))
    assert (text16.argmax(-1) == text_ref.argmax(-1)).float().mean() > 0.9


def test_lora_export_merged_and_unmerged(
    lora_trained: tuple[Path, torch.nn.Module], base16: Path, tmp_path: Path
) -> None:
    ckpt, model = lora_trained
    text_ref, audio_ref = logits_of(model)
    text_base, _ = logits_of(load_lm(base16))
    assert not torch.allclose(text_base, text_ref, atol=1e-3)  # the adapters matter

    merged = export_checkpoint(ExportConfig(checkpoint=ckpt, output=tmp_path / "merged", dtype="float32"))
    served = json.loads((merged / "config.json").read_text())
    assert served["lora"] is False and "lora_name" not in served and not (merged / "lora.safetensors").exists()
    assert not any("lora" in k for k in load_file(str(merged / LM_WEIGHTS)))
    text, audio = logits_of(load_export(merged))
    torch.testing.assert_close(text, text_ref, equal_nan=True, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio, audio_ref[:, :8], equal_nan=True, atol=1e-4, rtol=1e-4)

    kept = export_checkpoint(
        ExportConfig(checkpoint=ckpt, output=tmp_path / "kept", merge_lora=False, clean=False, dtype="float32")
    )
    served = json.loads((kept / "config.json").read_text())
    assert served["lora"] is True and served["lora_name"] == "lora.safetensors"
    assert served["lora_rank"] == LORA_RANK and served["lora_scaling"] == LORA_SCALING
    assert all(".lora_A." in k or ".lora_B." in k for k in load_file(str(kept / "lora.safetensors")))
    text, audio = logits_of(load_export(kept, lora=True))
    torch.testing.assert_close(text, text_ref, equal_nan=True, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio, audio_ref, equal_nan=True, atol=1e-4, rtol=1e-4)

    # An unmerged export is itself exportable (base + adapters in one folder): clean and merge it.
    again = export_checkpoint(ExportConfig(checkpoint=kept, output=tmp_path / "again", dtype="float32"))
    text, _ = logits_of(load_export(again))
    torch.testing.assert_close(text, text_ref, equal_nan=True, atol=1e-4, rtol=1e-4)


ZERO_SCRIPT = r"""
import json, os, sys, torch, torch.distributed as dist, deepspeed
from moshi.modules.lora import replace_all_linear_with_lora
from backend.models.weights import load_lm
source, out = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo", rank=0, world_size=1)

class Wrapper(torch.nn.Module):  # a training wrapper: ZeRO names become lm.<moshi name>
    def __init__(self, lm):
        super().__init__()
        self.lm = lm

for name, stage, lora in (("zero3", 3, False), ("zero2-lora", 2, True)):
    lm = load_lm(source)
    if lora:
        replace_all_linear_with_lora(lm, 4, 2.0)
        for n, p in lm.named_parameters():
            p.requires_grad_(".lora_" in n)
            if ".lora_B." in n:
                torch.nn.init.normal_(p, std=0.05)
        torch.save({k: v for k, v in lm.state_dict().items() if ".lora_" in k}, f"{out}/{name}.pt")
    model = Wrapper(lm)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    engine, *_ = deepspeed.initialize(model=model, optimizer=opt, dist_init_required=False, config={
        "train_micro_batch_size_per_gpu": 1, "zero_allow_untested_optimizer": True,
        "zero_optimization": {"stage": stage}})
    engine.save_checkpoint(f"{out}/{name}/accelerate_state", "pytorch_model")
    kwargs = json.loads(open(f"{source}/moshi_lm_kwargs.json").read())
    if lora:
        kwargs |= {"lora": True, "lora_rank": 4, "lora_scaling": 2.0}
    open(f"{out}/{name}/moshi_lm_kwargs.json", "w").write(json.dumps(kwargs))
"""


@pytest.mark.slow
def test_zero_checkpoints_consolidate(trained: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    """Real ZeRO-3 (full) and ZeRO-2 (LoRA, frozen base) checkpoints: one gloo process, DeepSpeed's own
    save_checkpoint, an LM wrapped in a training module (names lm.<moshi name>)."""
    ckpt, model = trained
    env = os.environ | {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "NO_TORCH_COMPILE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", ZERO_SCRIPT, str(ckpt), str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text_ref, audio_ref = logits_of(model)
    assert not (tmp_path / "zero3" / LM_WEIGHTS).exists()
    out = export_checkpoint(ExportConfig(checkpoint=tmp_path / "zero3", output=tmp_path / "zero3-out", dtype="float32"))
    assert set(load_file(str(out / LM_WEIGHTS))) == set(load_export(out).state_dict())  # moshi's names
    text, audio = logits_of(load_export(out))
    torch.testing.assert_close(text, text_ref, equal_nan=True)
    torch.testing.assert_close(audio, audio_ref[:, :8], equal_nan=True, atol=1e-5, rtol=1e-5)
    # LoRA under ZeRO-2: frozen base weights (frozen_W) + adapters, merged on export.
    lora_model = load_lm(ckpt)
    replace_all_linear_with_lora(lora_model, 4, 2.0)
    lora_model.load_state_dict(torch.load(tmp_path / "zero2-lora.pt"), strict=False)
    out = export_checkpoint(
        ExportConfig(checkpoint=tmp_path / "zero2-lora", output=tmp_path / "lora-out", dtype="float32")
    )
    text, audio = logits_of(load_export(out))
    text_ref, audio_ref = logits_of(lora_model)
    torch.testing.assert_close(text, text_ref, equal_nan=True, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio, audio_ref[:, :8], equal_nan=True, atol=1e-4, rtol=1e-4)


def test_bad_inputs(
    trained: tuple[Path, torch.nn.Module], base16: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, _ = trained
    missing = tmp_path / "missing"
    assert main(["--checkpoint", str(missing), "--output", str(tmp_path / "o")]) == 2
    assert f"{missing}: no such checkpoint folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="give the checkpoint folder"):
        export_checkpoint(ExportConfig())

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / LM_KWARGS).write_text((ckpt / LM_KWARGS).read_text())
    with pytest.raises(InputError, match="no model.safetensors, no lora.safetensors and no DeepSpeed"):
        export_checkpoint(ExportConfig(checkpoint=empty, output=tmp_path / "o"))

    alien = tmp_path / "alien"
    alien.mkdir()
    (alien / LM_KWARGS).write_text((ckpt / LM_KWARGS).read_text())
    save_file({"encoder.conv.weight": torch.zeros(2, 2)}, str(alien / LM_WEIGHTS))
    with pytest.raises(InputError, match=f"{alien}: not a moshi LM checkpoint.*missing.*unexpected"):
        export_checkpoint(ExportConfig(checkpoint=alien, output=tmp_path / "o"))
    (alien / LM_WEIGHTS).write_bytes(b"not safetensors at all")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        export_checkpoint(ExportConfig(checkpoint=alien, output=tmp_path / "o"))

    orphan = tmp_path / "orphan"  # adapters with no base reference anywhere
    orphan.mkdir()
    (orphan / LM_KWARGS).write_text((ckpt / LM_KWARGS).read_text())
    save_file({"linears.0.lora_A.weight": torch.zeros(4, 32)}, str(orphan / "lora.safetensors"))
    with pytest.raises(InputError, match="give base_model"):
        export_checkpoint(ExportConfig(checkpoint=orphan, output=tmp_path / "o"))

    with pytest.raises(ConfigError, match="would replace the input"):
        export_checkpoint(ExportConfig(checkpoint=ckpt, output=ckpt))
    assert not (tmp_path / "o").exists()

    # Cleaning a dep_q 8 model is a no-op: the same weights come out.
    src = base16.parent / "demo-lm"
    out = export_checkpoint(ExportConfig(checkpoint=src, output=tmp_path / "clean8", dtype="float32"))
    a, b = load_file(str(src / LM_WEIGHTS)), load_file(str(out / LM_WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# `python -m moshi.server` itself, unmodified but for one call: its warmup ends with torch.cuda.synchronize(), which
# fails on a CPU-only torch (PITFALLS), so that call is a no-op here. Everything else (argument parsing,
# CheckpointInfo.from_hf_repo with --lora-weight / --config-path, get_moshi(fuse_lora=...), the warmup, /api/chat)
# is moshi's own code.
_MOSHI_SERVER = """
import runpy, sys, torch
torch.cuda.synchronize = lambda *args, **kwargs: None
sys.argv = ["moshi.server", *sys.argv[1:]]
runpy.run_module("moshi.server", run_name="__main__")
"""


async def _first_reply(url: str, frames: int = 12) -> tuple[bool, int]:
    """(handshake seen, audio messages received) after sending `frames` 80 ms frames of a tone."""
    import asyncio

    import aiohttp
    import numpy as np
    import sphn

    writer = sphn.OpusStreamWriter(24_000)
    tone = (0.1 * np.sin(np.arange(frames * 1920) * 2 * np.pi * 220 / 24_000)).astype(np.float32)
    handshake, audio = False, 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        msg = await ws.receive(timeout=120)
        handshake = msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x00"
        for i in range(frames):
            await ws.send_bytes(b"\x01" + writer.append_pcm(tone[i * 1920 : (i + 1) * 1920]))
        deadline = asyncio.get_running_loop().time() + 120
        while audio == 0 and asyncio.get_running_loop().time() < deadline:
            msg = await ws.receive(timeout=120)
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            audio += msg.data[:1] == b"\x01"
    return handshake, audio


@pytest.fixture(scope="module")
def full_mimi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random full-size Mimi file (moshi.server has no option for another Mimi config), in bfloat16."""
    path = tmp_path_factory.mktemp("mimi") / "mimi.safetensors"
    mimi = loaders.get_mimi(None, device="cpu")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in mimi.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("fuse", [True, False])
def test_kept_lora_export_served_by_moshi_server(
    lora_trained: tuple[Path, torch.nn.Module], base16: Path, full_mimi: Path, tmp_path: Path, fuse: bool
) -> None:
    from chat_helpers import run_async
    from conftest import stop_process

    from backend.dataset.spm import train_spm
    from backend.demo.dialogues import demo_sentences
    from backend.demo.workspace import DEMO_VOCAB_SIZE

    ckpt, model = lora_trained
    kept = export_checkpoint(ExportConfig(checkpoint=ckpt, output=tmp_path / "kept", merge_lora=False))
    served = json.loads((kept / "config.json").read_text())
    assert served["lora"] is True and served["dep_q"] == 8
    tokenizer = train_spm(demo_sentences(), tmp_path / "spm.model", vocab_size=DEMO_VOCAB_SIZE)
    # The server's loading calls, in process: the adapters are in the model it serves, fused or not.
    info = loaders.CheckpointInfo.from_hf_repo(
        loaders.DEFAULT_REPO,
        str(kept / LM_WEIGHTS),
        str(full_mimi),
        str(tokenizer),
        lora_weights=str(kept / "lora.safetensors"),
        config_path=str(kept / "config.json"),
    )
    lm = info.get_moshi(device="cpu", dtype=torch.float32, fuse_lora=fuse)
    text, audio = logits_of(lm)
    text_ref, audio_ref = logits_of(model)
    base, _ = logits_of(load_lm(base16))
    assert (base - text_ref).abs().nan_to_num().max() > 0.2  # the adapters move the logits well past bf16 noise
    torch.testing.assert_close(text, text_ref, equal_nan=True, atol=2e-2, rtol=2e-2)  # bf16 export
    torch.testing.assert_close(audio, audio_ref[:, :8], equal_nan=True, atol=2e-2, rtol=2e-2)

    # And the server itself, on 127.0.0.1, answers a conversation.
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        _MOSHI_SERVER,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--static",
        "none",
        "--device",
        "cpu",
        "--moshi-weight",
        str(kept / LM_WEIGHTS),
        "--mimi-weight",
        str(full_mimi),
        "--tokenizer",
        str(tokenizer),
        "--config-path",
        str(kept / "config.json"),
        "--lora-weight",
        str(kept / "lora.safetensors"),
        *([] if fuse else ["--no_fuse_lora"]),
    ]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        import time

        deadline = time.time() + 300
        while "Access the Web UI" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(1.0)  # aiohttp binds right after that line
        handshake, audio = run_async(_first_reply(f"ws://127.0.0.1:{port}/api/chat"))
        assert handshake and audio > 0, log.read_text()[-3000:]
    finally:
        stop_process(proc)
