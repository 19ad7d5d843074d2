"""Init stage: turn a Moshi LM into the model a fine-tune starts from (SPEC.md "Models and checkpoints").

- user stream: dep_q 8 -> 16, the 8 new depformer steps copies of Moshi's own (`lm_surgery.resize_depformer`);
- optional text-embedding re-initialisation for a new tokenizer (J-Moshi's recipe: rows drawn from the
  mean/covariance of the existing rows, listed ids kept);
- written as model.safetensors + moshi_lm_kwargs.json in the `moshi` package's own names, plus
  init_config.json recording how it was made and tokenizer.json naming the text tokenizer (backend.models.
  text_tokenizer): the one given, checked against the LM's text card and (unless the text embeddings are
  re-initialised for it) against the source's, else the source's own record.

    python -m backend.models.initialise --source models/demo-lm --output models/demo-lm-init
"""

import sys
from pathlib import Path

import torch

from backend.core import config
from backend.core.atomic import atomic_dir
from backend.core.errors import StudioError
from backend.models.hub import check_reachable
from backend.models.init_config import InitConfig
from backend.models.output_folder import check_output
from backend.models.source import LM_WEIGHTS, is_hub_id, read_lm_kwargs, save_lm, torch_dtype
from backend.models.surgery import build_lm, count, resample_rows, resize_depformer, safetensors_shapes
from backend.models.text_tokenizer import (
    TokenizerRecord,
    check_agreement,
    model_pad_ids,
    read_record,
    read_tokenizer,
    write_record,
)
from backend.models.weights import load_lm, source_kwargs

INIT_CONFIG = "init_config.json"
TEXT_EMBEDDINGS = ("text_emb.weight", "depformer_text_emb.weight")


def text_tokenizer(cfg: InitConfig, kwargs: dict) -> TokenizerRecord | None:
    """The tokenizer record the initialised model gets; refuses one that does not fit the LM (ConfigError)."""
    source = None if is_hub_id(cfg.source) else read_record(cfg.source)
    if not cfg.tokenizer:
        return None if cfg.reinit_text_embeddings else source
    pads = model_pad_ids(kwargs)
    record = read_tokenizer(cfg.tokenizer, *pads)
    sides = {f"tokenizer {cfg.tokenizer}": record}
    if not cfg.reinit_text_embeddings:  # the source's embeddings mean its own tokenizer's pieces
        sides[f"the source {cfg.source}"] = source
    check_agreement(sides, text_card=int(kwargs["text_card"]), model_pad=pads)
    return record


def init_model(cfg: InitConfig) -> Path:
    """Write the initialised model folder `cfg.output`; returns it."""
    sources = () if is_hub_id(cfg.source) else (Path(cfg.source),)
    check_output(cfg.output, "init", INIT_CONFIG, *sources, overwrite=cfg.overwrite)
    if not sources:
        check_reachable(cfg.source)
    kwargs = source_kwargs(cfg.source)  # checks a local folder before any weights are read
    tokenizer = text_tokenizer(cfg, kwargs)
    dtype = torch_dtype(cfg.dtype)
    state = load_lm(cfg.source, dtype=dtype).state_dict()
    dep_q, n_q = int(kwargs["dep_q"]), int(kwargs["n_q"])
    if cfg.user_stream and dep_q < n_q:  # dep_q == n_q: the user stream is already modelled
        state, kwargs = resize_depformer(state, kwargs, 2 * dep_q)
    if cfg.reinit_text_embeddings:
        gen = torch.Generator().manual_seed(cfg.seed)
        for name in TEXT_EMBEDDINGS:
            state[name] = resample_rows(state[name], cfg.keep_text_ids, gen, cfg.reinit_cov_scale)
    model = build_lm(state, kwargs, dtype, where=f"{cfg.source} after init")
    with atomic_dir(cfg.output) as tmp:
        save_lm(model, kwargs, tmp)
        config.save(cfg, tmp / INIT_CONFIG)
        if tokenizer is not None:
            write_record(tmp, tokenizer)
    return cfg.output


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(
        InitConfig,
        "Initialise a Moshi LM for fine-tuning: user-stream extension "
        "(dep_q 8 -> 16), optional text-embedding re-initialisation.",
    )
    try:
        cfg = config.from_cli(InitConfig, parser.parse_args(argv))
        out = init_model(cfg)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kwargs, n = read_lm_kwargs(out), count(safetensors_shapes(out / LM_WEIGHTS))
    print(f"wrote {out}: dep_q {kwargs['dep_q']}, {n / 1e6:.1f} M parameters, dtype {cfg.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
