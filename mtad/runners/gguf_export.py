"""A transformers Llama-family causal LM written as a float32 GGUF file, for llama.cpp.

The llamacpp backend (mtad/runners/llamacpp.py) runs GGUF files. The tests and the tiny pair
build their models in-process as transformers models; this writes one of them as a GGUF of
llama.cpp's ``qwen2`` architecture, so every engine and decoder test runs the very weights the
other backends run. ``qwen2`` and transformers' Llama differ only in the q/k/v biases (optional in
llama.cpp) and both rotate by halves (NEOX), so no row of q or k needs permuting. The file has no
tokenizer (``tokenizer.ggml.model = none``, ``vocab_size`` dummy ids): a runner feeds token ids.

Only what the forward computes is written: a model with other parts (sliding windows, rope
scaling, a bias on the output projection) is refused rather than silently run as something else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ARCH = "qwen2"

# transformers parameter name (per layer, after "model.layers.N.") -> GGUF tensor name (after "blk.N.")
_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_TENSORS = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                   "lm_head.weight": "output.weight"}


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("rope_type", "default") != "default":
        raise ValueError(f"gguf export: rope type {params['rope_type']!r} is not written (only the default rope)")
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise ValueError("gguf export: the model config names no rope_theta")
    return float(theta)


def gguf_tensors(model) -> dict[str, np.ndarray]:
    """GGUF name -> float32 array (transformers' [out, in] layout, which GGUF stores as ggml's
    [in, out]) of every parameter of ``model``; an unknown parameter is refused."""
    tied = model.config.tie_word_embeddings
    tensors = {}
    for name, param in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when there is no output.weight
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers."):].split(".", 1)
            gguf_name = f"blk.{layer}.{_LAYER_TENSORS[rest]}" if rest in _LAYER_TENSORS else None
        else:
            gguf_name = _GLOBAL_TENSORS.get(name)
        if gguf_name is None:
            raise ValueError(f"gguf export: no GGUF tensor for parameter {name!r}")
        tensors[gguf_name] = param.detach().to(torch.float32).cpu().numpy()
    return tensors


def write_gguf(model, path: str | Path) -> Path:
    """Write ``model`` (a transformers Llama or Qwen2 causal LM) to ``path`` as a float32 GGUF."""
    import gguf

    config = model.config
    if config.model_type not in ("llama", "qwen2"):
        raise ValueError(f"gguf export writes llama and qwen2 models, not {config.model_type!r}")
    if getattr(config, "use_sliding_window", False):
        raise ValueError("gguf export: sliding-window attention is not written")
    if config.hidden_act != "silu" or getattr(config, "mlp_bias", False):
        raise ValueError("gguf export: only the SiLU-gated MLP without biases is written")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim * config.num_attention_heads != config.hidden_size:
        raise ValueError("gguf export: head_dim x heads must equal the hidden size (qwen2 in llama.cpp)")
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_vocab_size(config.vocab_size)
    writer.add_tokenizer_model("none")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, array in gguf_tensors(model).items():
        writer.add_tensor(name, np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
