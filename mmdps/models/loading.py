"""Loading policies and processors (text or vision-language), and LoRA through peft.

``load_policy`` picks ``AutoModelForImageTextToText`` for configs with a vision tower and
``AutoModelForCausalLM`` otherwise. Given a LoRA adapter folder (what a LoRA run's checkpoint saves:
``adapter_config.json`` + ``adapter_model.safetensors``) it loads the base model the adapter names and
merges the adapter into it, so an adapter evaluates like a full model. ``load_processor`` never trusts
``AutoProcessor`` alone: on a folder it cannot read fully (no torchvision, or a custom processor
class) it silently returns just the tokenizer, so the result is checked and an image-only Qwen2-VL
processor is built instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
# Module-name fragments of the vision towers of the supported VL families.
_VISION_MODULE_NAMES = ("visual", "vision_tower", "vision_model")


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """A Qwen2-VL processor without the video processor, for environments without torchvision.

    ``ProcessorMixin`` derives its sub-processors from the ``__init__`` signature, so leaving
    ``video_processor`` out means nothing here needs torchvision.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def _config_of(model_or_config: Any):
    # DDP / accelerate wrappers keep the real model in `.module`
    model_or_config = getattr(model_or_config, "module", model_or_config)
    return getattr(model_or_config, "config", model_or_config)


def is_vision_language(model_or_config: Any) -> bool:
    """True for a model (PEFT-wrapped or not) or config with a vision tower."""
    return getattr(_config_of(model_or_config), "vision_config", None) is not None


def get_tokenizer(processor: Any):
    """The tokenizer of a processor, or the argument itself when it already is a tokenizer."""
    return getattr(processor, "tokenizer", None) or processor


def vision_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the vision placeholder tokens the tokenizer knows (never to be sampled)."""
    vocab = tokenizer.get_vocab()
    return sorted({vocab[t] for t in VISION_TOKENS if t in vocab})


ADAPTER_CONFIG = "adapter_config.json"
# Files of which any one means a folder carries its own tokenizer (an adapter saved with its processor).
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")


def is_lora_adapter(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a peft adapter (``adapter_config.json``) rather than a model."""
    return os.path.isfile(os.path.join(os.fspath(path), ADAPTER_CONFIG))


def load_processor(path: str | os.PathLike, config: Any = None) -> Any:
    """The processor of a VL model folder, or the tokenizer of a text model folder (offline-safe).

    Args:
        config: the model config, for a folder that holds a processor but no ``config.json``
            (a LoRA adapter saved with its processor); read from ``path`` when None.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer

    path = os.fspath(path)
    if not is_vision_language(config if config is not None else AutoConfig.from_pretrained(path)):
        return AutoTokenizer.from_pretrained(path)
    try:
        processor = AutoProcessor.from_pretrained(path)
    except Exception:  # noqa: BLE001 - e.g. "Can't load video processor" without torchvision
        processor = None
    if processor is not None and getattr(processor, "image_processor", None) is not None:
        return processor
    tokenizer = AutoTokenizer.from_pretrained(path)
    return ImageOnlyQwen2VLProcessor(image_processor=AutoImageProcessor.from_pretrained(path), tokenizer=tokenizer,
                                     chat_template=tokenizer.chat_template)


def _resolve_dtype(dtype: str | torch.dtype, device: str | torch.device | None) -> torch.dtype:
    """``device`` is where the model will run; None means "moved there later": the GPU when there is
    one (the trainer's accelerator places it there), so "auto" is bfloat16 on a GPU machine."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":  # bf16 on GPUs that support it, float32 on the CPU (bf16 CPU kernels are slow)
        on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
        return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in choices:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(choices)}, got {dtype!r}")
    return choices[dtype]


def load_policy(path: str | os.PathLike, *, dtype: str | torch.dtype = "auto", attn_implementation: str | None = None,
                device: str | torch.device | None = None, processor: Any = None) -> tuple[PreTrainedModel, Any]:
    """Load a policy model and its processor (VL) or tokenizer (text) from a local folder or hub id.

    A LoRA adapter folder (``adapter_config.json``, as a LoRA run's checkpoint ``model/`` folder holds)
    loads its base model (``base_model_name_or_path``, which must be available locally when offline),
    applies the adapter and merges it (``merge_and_unload``); the processor comes from the adapter
    folder when it has a tokenizer, else from the base.

    Args:
        dtype: "auto" (bfloat16 on a CUDA device, float32 otherwise; with ``device=None`` the model is
            meant for the GPU when the machine has one), "float32", "bfloat16", "float16".
        attn_implementation: passed to ``from_pretrained`` ("sdpa", "flash_attention_2", "eager", ...).
        device: where to put the model; ``None`` leaves it on the CPU (accelerate moves it later).
        processor: the processor already loaded by :func:`load_policy_processor` (not loaded twice).
    """
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    path = os.fspath(path)
    if is_lora_adapter(path):
        return _load_merged_adapter(path, dtype=dtype, attn_implementation=attn_implementation, device=device)
    target = torch.device(device) if device is not None else torch.device("cpu")
    config = model_config(path)
    model_cls = AutoModelForImageTextToText if is_vision_language(config) else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"dtype": _resolve_dtype(dtype, device)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = model_cls.from_pretrained(path, **kwargs)
    processor = load_processor(path, config=config) if processor is None else processor
    _fill_generation_tokens(model, processor)
    if device is not None:
        model.to(target)  # type: ignore[arg-type]  # transformers' decorated .to() signature drops self
    return model, processor


def model_config(path: str | os.PathLike):
    """The model config of a HF model folder or hub id, with errors that say what to fix."""
    from transformers import AutoConfig

    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        inner = os.path.join(path, "model")
        is_model = any(os.path.isfile(os.path.join(inner, name)) for name in ("config.json", ADAPTER_CONFIG))
        hint = f"; this looks like an mmdps checkpoint, pass its model folder {inner}" if is_model else ""
        raise FileNotFoundError(f"{path} has no config.json (nor {ADAPTER_CONFIG}), so it is neither a Hugging Face "
                                f"model folder nor a LoRA adapter{hint}")
    try:
        return AutoConfig.from_pretrained(path)
    except OSError as exc:
        if os.path.exists(path):
            raise
        # transformers reports a missing folder as a malformed hub id; say what the user can fix.
        raise FileNotFoundError(f"model {path!r} is neither a local folder nor loadable from the Hugging Face hub "
                                f"({exc}); pass a model folder (e.g. from `mmdps tiny-model`) or a hub id "
                                "that is cached or reachable") from exc


def load_policy_processor(path: str | os.PathLike) -> tuple[Any, bool]:
    """The processor (VL) or tokenizer (text) :func:`load_policy` uses for ``path``, and whether the model is a
    vision-language one, read without loading any weights (a LoRA adapter folder: its own tokenizer when it
    has one, else its base model's)."""
    path = os.fspath(path)
    if is_lora_adapter(path):
        base = adapter_base_model(path)
        config = model_config(base)
        has_tokenizer = any(os.path.isfile(os.path.join(path, name)) for name in _TOKENIZER_FILES)
        return load_processor(path if has_tokenizer else base, config=config), is_vision_language(config)
    config = model_config(path)
    return load_processor(path, config=config), is_vision_language(config)


def _fill_generation_tokens(model: PreTrainedModel, processor: Any) -> None:
    tokenizer = get_tokenizer(processor)
    generation_config = model.generation_config
    if generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    if generation_config.eos_token_id is None:
        generation_config.eos_token_id = tokenizer.eos_token_id


def adapter_base_model(path: str | os.PathLike) -> str:
    """The base model (folder or hub id) a LoRA adapter folder was trained on (``base_model_name_or_path``)."""
    config_file = os.path.join(os.fspath(path), ADAPTER_CONFIG)
    try:
        with open(config_file, encoding="utf-8") as fh:
            base = json.load(fh).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{config_file} is not a readable peft adapter config ({exc})") from exc
    if not base:
        raise ValueError(f"{config_file} names no base model (base_model_name_or_path is empty); set it to the "
                         "folder or hub id of the model the adapter was trained on")
    return str(base)


def _load_merged_adapter(path: str, *, dtype: str | torch.dtype, attn_implementation: str | None,
                         device: str | torch.device | None) -> tuple[PreTrainedModel, Any]:
    """Load the adapter's base model, apply the adapter and merge it (plain weights: fast inference, and
    every engine and ``save_pretrained`` see an ordinary model)."""
    from peft import PeftModel

    base = adapter_base_model(path)
    target = torch.device(device) if device is not None else torch.device("cpu")
    try:  # "auto" is resolved for the final device (bfloat16 on a GPU), not the CPU where the merge happens
        model, base_processor = load_policy(base, dtype=_resolve_dtype(dtype, device),
                                            attn_implementation=attn_implementation)
    except OSError as exc:  # FileNotFoundError included: a moved folder, or a hub id not cached offline
        raise FileNotFoundError(
            f"LoRA adapter {path} was trained on base model {base!r}, which cannot be loaded here ({exc}). Make the "
            f"base available (the same folder, or a hub id in the local cache when offline), or edit "
            f"base_model_name_or_path in {os.path.join(path, ADAPTER_CONFIG)} to point at a copy of it") from exc
    model = PeftModel.from_pretrained(model, path).merge_and_unload()
    has_tokenizer = any(os.path.isfile(os.path.join(path, name)) for name in _TOKENIZER_FILES)
    # The trainer saves the processor beside the adapter (it may carry added tokens or a new chat template).
    processor = load_processor(path, config=model.config) if has_tokenizer else base_processor
    _fill_generation_tokens(model, processor)
    if device is not None:
        model.to(target)
    return model, processor


def save_merged_adapter(path: str | os.PathLike, out_dir: str | os.PathLike, *,
                        dtype: str | torch.dtype | None = None) -> str:
    """Write the LoRA adapter folder ``path`` merged into its base model as a full model folder ``out_dir``
    (with the processor), e.g. for vLLM, which loads full model folders. Returns ``out_dir``.

    Args:
        dtype: precision of the written weights; None keeps the base model's saved dtype (float32 if it
            names none), so a bfloat16 base gives a bfloat16 folder of the same size.
    """
    if not is_lora_adapter(path):
        raise ValueError(f"{path} is not a LoRA adapter folder (no {ADAPTER_CONFIG})")
    if dtype is None:
        from transformers import AutoConfig

        saved = getattr(AutoConfig.from_pretrained(adapter_base_model(path)), "dtype", None)
        dtype = saved if isinstance(saved, torch.dtype) else str(saved or "float32").removeprefix("torch.")
    model, processor = load_policy(path, dtype=dtype)
    out_dir = os.fspath(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return out_dir


def _is_vision_module(name: str) -> bool:
    return any(part in _VISION_MODULE_NAMES for part in name.split("."))


def lora_target_modules(model: nn.Module, target_modules: str | Sequence[str] = "all-linear",
                        exclude_vision: bool = True) -> list[str]:
    """Full names of the ``nn.Linear`` modules LoRA should wrap.

    ``"all-linear"`` means every linear layer except the output head; a list of short names
    (``["q_proj", "v_proj"]``) selects by the last name component. With ``exclude_vision`` the vision
    tower (and its merger) is left out, so only the language model is adapted.
    """
    get_output_embeddings = getattr(model, "get_output_embeddings", None)  # transformers models have it
    output = get_output_embeddings() if get_output_embeddings is not None else None
    wanted = None if target_modules == "all-linear" else {target_modules} if isinstance(target_modules, str) \
        else set(target_modules)
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is output:
            continue
        if wanted is not None and name.rsplit(".", 1)[-1] not in wanted:
            continue
        if exclude_vision and _is_vision_module(name):
            continue
        names.append(name)
    if not names:
        raise ValueError(f"no linear modules match target_modules={target_modules!r} "
                         f"(exclude_vision={exclude_vision}); check the module names of {type(model).__name__}")
    return names


def apply_lora(model: nn.Module, *, r: int = 16, alpha: int = 32, dropout: float = 0.0,
               target_modules: str | Sequence[str] = "all-linear", exclude_vision: bool = True) -> nn.Module:
    """Wrap ``model`` in a peft LoRA model (only adapter weights train).

    ``exclude_vision=True`` targets only language-model linears, leaving the vision tower frozen
    and unadapted (vLLM cannot apply LoRA to the ViT either).
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", task_type="CAUSAL_LM",
                        target_modules=lora_target_modules(model, target_modules, exclude_vision))
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model: Any) -> None:
    """Turn on gradient checkpointing (non-reentrant), also under a peft wrapper with frozen embeddings.
    ``model`` is a transformers model or its peft wrapper; the methods are looked up by name."""
    # newer transformers 5.x renamed it activation checkpointing; older 5.x only has the old name
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    if hasattr(model, "config"):
        model.config.use_cache = False
