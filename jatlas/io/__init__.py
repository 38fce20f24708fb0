"""Interop: PyTorch/safetensors checkpoints <-> Flax pytrees, LoRA, the Hub.

Usage:
  from jatlas import io
  variables = io.load_torch("model.safetensors")         # torch names/layouts -> flax
  variables = io.from_torch(net, "twin.safetensors", input_shape=(32, 32, 3))
  state_dict = io.to_torch(net, variables, input_shape=(32, 32, 3))
  w_FOI = io.read_layer(paths, "fc1.weight")             # one layer of many files
  io.save_safetensors("out.safetensors", variables, {"format": "flax"})
  deltas = io.lora_deltas("adapter_dir")                 # {module: B @ A * scale}
  from jatlas.io import hub                              # Hub download/card/push
  zoo = hub.open_zoo("org/digits-zoo")                   # a zoo from the Hub (cache)
"""
from jatlas.io.adapters import from_torch, member_to_torch, to_torch
from jatlas.io.load_torch import load_torch, read_state_dict, to_state_dict
from jatlas.io.lora import LoraFactors, lora_deltas, read_lora
from jatlas.io.safetensors_io import (CheckpointError, load_file, read_layer,
                                      read_metadata, read_tensor, save_safetensors,
                                      tensor_shapes)
from jatlas.io.strict import StateDictMismatchError
from jatlas.io.torch_names import (FLAX_TO_TORCH, TORCH_TO_FLAX, Rule, apply_rules,
                                   hf_attention_rules, mha_rules)

__all__ = [
    "from_torch", "member_to_torch", "to_torch", "load_torch", "read_state_dict", "to_state_dict",
    "LoraFactors", "lora_deltas", "read_lora", "CheckpointError", "load_file",
    "read_layer", "read_metadata", "read_tensor", "save_safetensors", "tensor_shapes",
    "StateDictMismatchError", "FLAX_TO_TORCH", "TORCH_TO_FLAX", "Rule", "apply_rules",
    "hf_attention_rules", "mha_rules",
]
