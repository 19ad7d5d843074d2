"""The init stage's config, torch-free: the studio builds its form without loading torch (the stage itself
is backend.models.initialise)."""

from dataclasses import dataclass
from pathlib import Path

from backend.core.config import option
from backend.core.spec import EPAD_ID, PAD_ID, TEXT_CARD
from backend.models.source import Dtype

# Where Initialise writes by default, and what the fine-tune presets train: the demo LM's extension, or the
# real 7B model's (Settings pointing at moshiko, moshika or J-Moshi).
DEMO_INIT = "models/demo-lm-init"
MOSHIKO_INIT = "models/moshiko-init"


def init_output(demo: bool) -> str:
    return DEMO_INIT if demo else MOSHIKO_INIT


@dataclass
class InitConfig:
    source: str = option(
        "models/demo-lm",
        "LM to start from: a model folder (model.safetensors + "
        "moshi_lm_kwargs.json) or a hub repo id such as kyutai/moshiko-pytorch-bf16",
    )
    output: Path = option(Path(DEMO_INIT), "model folder to write (an earlier init's output there is replaced)")
    user_stream: bool = option(
        True, "model the user's audio too: depformer dep_q 8 -> 16, the new steps copied from Moshi's own"
    )
    reinit_text_embeddings: bool = option(
        False,
        "re-initialise the text embeddings (text_emb, depformer_text_emb) "
        "for a new tokenizer, sampling from the existing rows' mean/covariance",
    )
    keep_text_ids: list[int] = option(
        [EPAD_ID, PAD_ID, TEXT_CARD],
        "text ids whose embedding rows are kept on re-initialisation (EPAD, PAD and the initial token, as J-Moshi)",
    )
    reinit_cov_scale: float = option(
        1e-5, "covariance scale of the re-initialised rows (J-Moshi: 1e-5; 1: the full spread of the existing rows)"
    )
    tokenizer: str = option(
        "",
        "SentencePiece model the fine-tune will use: recorded in the model (tokenizer.json), "
        "refused when larger than the LM's text card or, without --reinit-text-embeddings, "
        "other than the one the source was made with (none: the source's record is kept)",
    )
    dtype: Dtype = option("float32", "parameter dtype of the written model")
    seed: int = option(0, "seed of the re-initialisation")
    overwrite: bool = option(
        False, "replace an existing folder that is not an earlier init's output (never a checkpoint or a model in use)"
    )
