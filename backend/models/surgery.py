"""State-dict surgery on Moshi LMs, shared by the init stage and the export stage.

Everything works on `{name: tensor}` dicts in the `moshi` package's own parameter names, so the same
code runs on real weights and on meta tensors (the 7B proof, `parameter_report`).

Which tensors are indexed by depformer step (read from `moshi/models/lm.py` and
`moshi/modules/transformer.py`): with `depformer_multi_linear` one `depformer_in.{i}` per step; one
`depformer_emb.{i}` per step but the first (step 0 embeds the text token, `depformer_text_emb`);
`depformer_norms.{i}` (parameter-free Identity unless `depformer_norm` is set); `linears.{i}`; and with
`depformer_weights_per_step` every depformer layer's `self_attn.in_projs.{i}`, `self_attn.out_projs.{i}`
and `gating.{i}`. The layer norms (`norm1`, `norm2`) are shared by all steps.
"""

import copy
import re
from pathlib import Path
from typing import Any

import torch
from moshi.models import loaders
from moshi.models.lm import LMModel

from backend.core.errors import ConfigError, InputError
from backend.models.source import moshi_lm_kwargs

State = dict[str, torch.Tensor]

# <list>.<step>.<rest>: the ModuleLists whose entries may be one per depformer step.
_STEP_KEY = re.compile(
    r"^(?P<list>depformer_in|depformer_emb|depformer_norms|linears|"
    r"depformer\.layers\.\d+\.(?:self_attn\.in_projs|self_attn\.out_projs|gating))"
    r"\.(?P<step>\d+)\.(?P<rest>.+)$"
)
# Attention weights under moshi's older names (PersonaPlex's vendored moshi still uses them, and so do its
# published weights): one tensor holding every step's rows, as moshi's StreamingMultiheadAttention._load_hook maps
# them onto its per-step lists (rows split evenly, step i = i-th slice).
_OLD_ATTENTION = re.compile(r"^(?P<layer>.*self_attn\.)(?P<old>in_proj_weight|in_proj\.weight|out_proj\.weight)$")
_NEW_ATTENTION = {"in_proj_weight": "in_projs", "in_proj.weight": "in_projs", "out_proj.weight": "out_projs"}
# Keys of LMModel's constructor that only `loaders.get_moshi_lm` understands (LoRA settings).
LORA_KWARGS = ("lora", "lora_rank", "lora_scaling")


def _entries_per_step(list_name: str, dep_q: int) -> int:
    """How many entries a per-step list has: the depformer embeddings skip step 0 (text input)."""
    return dep_q - 1 if list_name == "depformer_emb" else dep_q


def _list_lengths(keys: list[str]) -> dict[str, int]:
    lengths: dict[str, int] = {}
    for key in keys:
        m = _STEP_KEY.match(key)
        if m:
            lengths[m["list"]] = max(lengths.get(m["list"], 0), int(m["step"]) + 1)
    return lengths


def _grown_source(list_name: str, index: int, dep_q: int) -> int:
    """Which old entry a new entry of a doubled list copies: step i + dep_q starts as step i.

    The embedding feeding the first user step (depformer_emb[dep_q - 1], whose input token is Moshi's
    last codebook) has no counterpart in Moshi's steps; like J-Moshi we start it as a copy of
    depformer_emb[0], the embedding of Moshi's codebook 0."""
    if list_name == "depformer_emb":
        return 0 if index == dep_q - 1 else index - dep_q
    return index - dep_q


def resize_depformer(state: State, kwargs: dict[str, Any], new_dep_q: int) -> tuple[State, dict[str, Any]]:
    """(state, kwargs) with `new_dep_q` depformer steps.

    Growing doubles dep_q (8 -> 16: the user stream), each new step a copy of Moshi's step i;
    shrinking keeps the first `new_dep_q` steps (the clean export). Works on meta tensors and on any
    suffix (LoRA's lora_A/lora_B keys are resized like the weights they adapt)."""
    old = int(kwargs["dep_q"])
    if kwargs.get("depformer_weights_per_step_schedule") is not None:
        raise ConfigError(
            "models with depformer_weights_per_step_schedule (shared step weights) cannot be "
            "resized: the user stream would need a new schedule"
        )
    if new_dep_q == old:
        return dict(state), copy.deepcopy(kwargs)
    if new_dep_q > int(kwargs["n_q"]) or new_dep_q < 1 or (new_dep_q > old and new_dep_q != 2 * old):
        raise ConfigError(
            f"dep_q {old} -> {new_dep_q}: only doubling (the user stream) or keeping the first "
            f"steps is supported, and dep_q cannot exceed n_q = {kwargs['n_q']}"
        )
    lengths = _list_lengths(list(state))
    # A list is per step only if it has one entry per step (depformer_in without multi_linear and
    # the attention without weights_per_step have a single shared entry).
    per_step = {name for name, n in lengths.items() if n == _entries_per_step(name, old)}
    out: State = {}
    for key, value in state.items():
        m = _STEP_KEY.match(key)
        if m and m["list"] in per_step and int(m["step"]) >= _entries_per_step(m["list"], new_dep_q):
            continue  # a dropped step (shrinking)
        out[key] = value
    if new_dep_q > old:
        for key, value in state.items():
            m = _STEP_KEY.match(key)
            if not (m and m["list"] in per_step and int(m["step"]) == 0):
                continue
            for index in range(_entries_per_step(m["list"], old), _entries_per_step(m["list"], new_dep_q)):
                source = f"{m['list']}.{_grown_source(m['list'], index, old)}.{m['rest']}"
                out[f"{m['list']}.{index}.{m['rest']}"] = state[source].clone()
    new_kwargs = copy.deepcopy(kwargs)
    new_kwargs["dep_q"] = new_dep_q
    if new_kwargs.get("depformer_context") == old:  # the depformer attends over all of its steps
        new_kwargs["depformer_context"] = new_dep_q
    ff = new_kwargs.get("depformer_dim_feedforward")
    if isinstance(ff, list) and len(ff) == old:  # one feed-forward size per step
        new_kwargs["depformer_dim_feedforward"] = (ff + ff)[:new_dep_q]
    return out, new_kwargs


def current_attention_names(state: State, where: str | Path) -> State:
    """`state` with attention weights saved under moshi's older names split into its current per-step lists;
    other names pass unchanged. The number of steps of a layer is read from its output projection, which is
    [steps * dim, dim] (one step outside the depformer)."""
    out: State = {}
    for key, value in state.items():
        m = _OLD_ATTENTION.match(key)
        if m is None:
            out[key] = value
            continue
        out_proj = state.get(f"{m['layer']}out_proj.weight")
        if (
            out_proj is None
            or out_proj.dim() != 2
            or out_proj.shape[0] % out_proj.shape[1]
            or value.shape[0] % (out_proj.shape[0] // out_proj.shape[1])
        ):
            raise InputError(
                where,
                f"{key}: attention weights under moshi's older names, but "
                f"{m['layer']}out_proj.weight does not say how many steps they hold",
            )
        steps = out_proj.shape[0] // out_proj.shape[1]
        for i, part in enumerate(value.chunk(steps, dim=0)):
            out[f"{m['layer']}{_NEW_ATTENTION[m['old']]}.{i}.weight"] = part
    return out


def base_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The LMModel kwargs without the LoRA settings."""
    return {k: v for k, v in kwargs.items() if k not in LORA_KWARGS}


def meta_lm(kwargs: dict[str, Any], dtype: torch.dtype = torch.float32) -> LMModel:
    """The architecture of `kwargs` on the meta device: shapes only, no memory, through moshi's loader."""
    return loaders.get_moshi_lm(None, lm_kwargs=base_kwargs(kwargs), device=torch.device("meta"), dtype=dtype)


def shapes_of(state: State) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def check_shapes(shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], where: str) -> None:
    """Raise InputError naming `where` unless the parameter names and shapes are exactly `expected`."""
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing parameter(s), e.g. {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected parameter(s), e.g. {', '.join(unexpected[:3])}")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} shape mismatch(es), e.g. {k} is {list(shapes[k])}, expected {list(expected[k])}")
    raise InputError(where, "not a moshi LM checkpoint for its moshi_lm_kwargs.json: " + "; ".join(parts))


def build_lm(state: State, kwargs: dict[str, Any], dtype: torch.dtype, where: str = "model") -> LMModel:
    """An LMModel of `kwargs` holding exactly `state` (cast to `dtype`); names and shapes are checked."""
    model = meta_lm(kwargs, dtype)
    check_shapes(shapes_of(state), shapes_of(model.state_dict()), where)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    return model


def resample_rows(
    weight: torch.Tensor, keep_ids: list[int], generator: torch.Generator, cov_scale: float
) -> torch.Tensor:
    """New rows from N(mean, cov_scale * covariance) of the existing rows; `keep_ids` rows are kept.

    J-Moshi re-initialises its text embeddings this way for a new tokenizer, with cov_scale 1e-5
    (every new piece starts near the average embedding)."""
    bad = [i for i in keep_ids if not 0 <= i < weight.shape[0]]
    if bad:
        raise ConfigError(f"keep_text_ids: {bad} outside the {weight.shape[0]} text embedding rows")
    rows = weight.detach().to(torch.float32)
    mean = rows.mean(dim=0)
    centered = rows - mean
    cov = cov_scale * (centered.T @ centered) / rows.shape[0]
    # A tiny relative jitter keeps the Cholesky factor defined for a rank-deficient covariance.
    jitter = 1e-6 * cov.diagonal().mean().clamp(min=1e-30)
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(cov.shape[0]))
    noise = torch.randn(rows.shape, generator=generator)
    new = (mean + noise @ chol.T).to(weight.dtype)
    new[keep_ids] = weight[keep_ids]
    return new


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes in a safetensors file without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise InputError(file, f"not a readable safetensors file ({e})") from None


def count(shapes: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for shape in shapes.values():
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


def parameter_report(kwargs: dict[str, Any] | None = None, user_dep_q: int = 16) -> dict[str, int]:
    """The init/clean proof on the meta device (no weights; Moshi 7B's kwargs by default).

    Extends the architecture to `user_dep_q` steps with `resize_depformer`, checks names and shapes
    against a fresh LMModel(dep_q=user_dep_q), cleans back and checks against the original. Returns the
    parameter counts; raises InputError on any mismatch."""
    kwargs = moshi_lm_kwargs() if kwargs is None else copy.deepcopy(kwargs)
    base = meta_lm(kwargs).state_dict()
    grown, grown_kwargs = resize_depformer(base, kwargs, user_dep_q)
    fresh = shapes_of(meta_lm(grown_kwargs).state_dict())
    check_shapes(shapes_of(grown), fresh, f"dep_q {user_dep_q} extension")
    cleaned, clean_kwargs = resize_depformer(grown, grown_kwargs, int(kwargs["dep_q"]))
    check_shapes(shapes_of(cleaned), shapes_of(base), "clean")
    if clean_kwargs != kwargs:
        raise InputError("clean", f"kwargs differ after extend + clean: {clean_kwargs} vs {kwargs}")
    return {
        "base": count(shapes_of(base)),
        "init": count(shapes_of(grown)),
        "fresh": count(fresh),
        "clean": count(shapes_of(cleaned)),
        "added": count(shapes_of(grown)) - count(shapes_of(base)),
    }
