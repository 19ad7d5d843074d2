"""Budget before launch, for the real 7B architecture on the meta device, against formulas computed here."""

import copy
from pathlib import Path

import pytest
import torch
from moshi.models import loaders
from torch import nn
from train_helpers import write_dataset, write_model

from backend.core import config
from backend.finetune.budget import count_examples, estimate, estimate_config
from backend.finetune.config import FinetuneConfig
from backend.models.source import tiny_lm_kwargs


def cfg(**values: object) -> FinetuneConfig:
    return config.from_dict(FinetuneConfig, values)


@pytest.fixture(scope="module")
def moshi_7b() -> dict:
    return copy.deepcopy(loaders._lm_kwargs)  # moshiko's kwargs (a module-level dict: copy it)


@pytest.fixture(scope="module")
def p7b(moshi_7b: dict) -> int:
    """Parameters of the 7B model counted from its modules here (not through the budget code)."""
    with torch.device("meta"):
        model = loaders.get_moshi_lm(None, lm_kwargs=moshi_7b, device="meta")
    return sum(p.numel() for p in model.parameters())


def test_7b_zero3_bf16_is_16_bytes_per_parameter_over_the_devices(moshi_7b: dict, p7b: int) -> None:
    b = estimate(cfg(deepspeed="zero3", num_processes=8, mixed_precision="bf16", dtype="bfloat16"), moshi_7b)
    assert 7.5e9 < b.params_total == b.params_trainable == p7b < 7.8e9  # moshiko: 7.69 B
    assert b.zero_stage == 3 and b.processes == 8
    assert (b.weight_bytes, b.grad_bytes, b.optimizer_bytes) == (p7b * 2 // 8, p7b * 2 // 8, p7b * 12 // 8)
    assert abs(b.weight_bytes + b.grad_bytes + b.optimizer_bytes - p7b * 16 / 8) <= 3


def test_7b_zero2_shards_gradients_and_optimiser_but_not_weights(moshi_7b: dict, p7b: int) -> None:
    b = estimate(cfg(deepspeed="zero2", num_processes=4, mixed_precision="bf16"), moshi_7b)
    assert (b.weight_bytes, b.grad_bytes, b.optimizer_bytes) == (p7b * 2, p7b * 2 // 4, p7b * 12 // 4)


def test_7b_without_deepspeed_replicates_fp32_adamw(moshi_7b: dict, p7b: int) -> None:
    b = estimate(cfg(num_processes=2), moshi_7b)
    assert b.zero_stage == 0
    assert (b.weight_bytes, b.grad_bytes, b.optimizer_bytes) == (4 * p7b, 4 * p7b, 8 * p7b)  # 16 bytes, twice


def test_7b_lora_trains_rank_times_in_plus_out_per_linear(moshi_7b: dict, p7b: int) -> None:
    model = loaders.get_moshi_lm(None, lm_kwargs=moshi_7b, device="meta")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    adapters = sum(16 * (m.in_features + m.out_features) for m in linears)
    b = estimate(cfg(mode="lora", lora_rank=16, mixed_precision="bf16", dtype="bfloat16"), moshi_7b)
    assert (b.params_trainable, b.params_total) == (adapters, p7b + adapters)
    assert b.weight_bytes == 2 * (p7b + adapters) and b.optimizer_bytes == 4 * adapters  # bf16 AdamW moments


def test_subset_counts_only_the_named_parameters(moshi_7b: dict) -> None:
    model = loaders.get_moshi_lm(None, lm_kwargs=moshi_7b, device="meta")
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("depformer", "text_emb")))
    assert estimate(cfg(mode="subset", trainable=["depformer", "text_emb"]), moshi_7b).params_trainable == expected


def test_meta_count_equals_the_real_tiny_model() -> None:
    kwargs = tiny_lm_kwargs()
    real = loaders.get_moshi_lm(None, lm_kwargs=kwargs, device="cpu", dtype=torch.float32)
    assert estimate(cfg(), kwargs).params_total == sum(p.numel() for p in real.parameters())


def test_tokens_per_step_and_passes(tmp_path: Path, moshi_7b: dict) -> None:
    c = cfg(batch_size=2, grad_accum=4, num_processes=8, max_frames=375, max_steps=100)
    b = estimate(c, moshi_7b, examples_per_pass=640)
    assert b.examples_per_step == 64 and b.tokens_per_step == 64 * 375 * 17
    assert b.passes == pytest.approx(100 * 64 / 640)
    # 4 dialogues of 40 frames, chunks of 16 (16 + 16 + a tail of 8 >= 4), both speakers play Moshi
    small = cfg(train_data=str(write_dataset(tmp_path / "data", [40] * 4)), max_frames=16, min_frames=4)
    assert count_examples(small) == 4 * 3 * 2
    assert count_examples(cfg(**{**config.to_dict(small), "min_frames": 9, "main_speaker": "A"})) == 4 * 2


def test_checkpointing_shrinks_activations_and_summary_reports(moshi_7b: dict) -> None:
    plain = estimate(cfg(mixed_precision="bf16", max_frames=375), moshi_7b)
    ckpt = estimate(cfg(mixed_precision="bf16", max_frames=375, activation_checkpointing=True), moshi_7b)
    assert 0 < ckpt.activation_bytes < plain.activation_bytes / 3
    text = plain.summary()
    assert "7,687.7 M total" in text and "no ZeRO sharding" in text and "6,375 tokens" in text


def test_estimate_config_reads_the_model_folder_and_the_dataset(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", [40] * 4)
    model = write_model(tmp_path / "model", dep_q=16)
    c = cfg(base_model=str(model), train_data=str(data), max_frames=16, min_frames=4, batch_size=2, max_steps=6)
    b = estimate_config(c)
    assert b.params_total == estimate(c, tiny_lm_kwargs() | {"dep_q": 16}).params_total
    assert (b.examples_per_pass, b.passes) == (24, 6 * 2 / 24)
    hub = estimate_config(cfg(base_model="kyutai/moshiko-pytorch-bf16", train_data=str(tmp_path / "none")))
    assert 7.5e9 < hub.params_total < 7.8e9 and hub.passes is None
