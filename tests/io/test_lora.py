"""PEFT LoRA adapters: factors, merged deltas vs NumPy, config errors."""
import json
import math

import numpy as np
import pytest

from jatlas import io

R, ALPHA = 4, 8
MODULES = {"encoder.layer.0.attention.q_proj": (12, 16), "encoder.layer.0.mlp.fc1": (20, 12)}


def write_adapter(folder, config=None, dtype=np.float32, drop=None):
  """A PEFT adapter folder; returns {module: (A, B)} as written."""
  rng = np.random.default_rng(0)
  tensors, factors = {}, {}
  for module, (d_in, d_out) in MODULES.items():
    a, b = rng.normal(size=(R, d_in)).astype(dtype), rng.normal(size=(d_out, R)).astype(dtype)
    tensors[f"base_model.model.{module}.lora_A.weight"] = a
    tensors[f"base_model.model.{module}.lora_B.weight"] = b
    factors[module] = (a, b)
  tensors.pop(drop, None)
  folder.mkdir(exist_ok=True)
  io.save_safetensors(str(folder / "adapter_model.safetensors"), tensors)
  config = {"r": R, "lora_alpha": ALPHA, "peft_type": "LORA",
            "target_modules": ["q_proj", "fc1"], **(config or {})}
  (folder / "adapter_config.json").write_text(json.dumps(config))
  return factors


def test_factors_and_merged_delta(tmp_path):
  written = write_adapter(tmp_path / "adapter")
  factors = io.read_lora(str(tmp_path / "adapter"))
  assert sorted(factors) == sorted(MODULES)
  for module, (a, b) in written.items():
    f = factors[module]
    np.testing.assert_array_equal(f.a_RI, a)
    np.testing.assert_array_equal(f.b_OR, b)
    assert (f.r, f.alpha, f.scale) == (R, ALPHA, ALPHA / R)
  deltas = io.lora_deltas(str(tmp_path / "adapter" / "adapter_model.safetensors"))
  for module, (a, b) in written.items():
    np.testing.assert_allclose(deltas[module], b @ a * ALPHA / R, rtol=1e-6, atol=1e-6)
    assert deltas[module].shape == (MODULES[module][1], MODULES[module][0])


def test_merged_weight_equals_the_lora_forward(tmp_path):
  """W + delta applied to x equals the adapter's forward x W^T + s (x A^T) B^T."""
  write_adapter(tmp_path / "adapter")
  module = "encoder.layer.0.mlp.fc1"
  f = io.read_lora(str(tmp_path / "adapter"))[module]
  rng = np.random.default_rng(1)
  d_in, d_out = MODULES[module]
  w_OI = rng.normal(size=(d_out, d_in)).astype(np.float32)
  x_NI = rng.normal(size=(5, d_in)).astype(np.float32)
  lora_forward = x_NI @ w_OI.T + ALPHA / R * (x_NI @ f.a_RI.T) @ f.b_OR.T
  kernels = io.lora_deltas(str(tmp_path / "adapter"), layout="flax")
  merged_IO = w_OI.T + kernels["params/encoder/layer/0/mlp/fc1/kernel"]
  np.testing.assert_allclose(x_NI @ merged_IO, lora_forward, rtol=1e-5, atol=1e-4)


def test_rslora_and_half_precision(tmp_path):
  written = write_adapter(tmp_path / "a", config={"use_rslora": True}, dtype=np.float16)
  f = io.read_lora(str(tmp_path / "a"))["encoder.layer.0.attention.q_proj"]
  assert f.scale == ALPHA / math.sqrt(R) and f.a_RI.dtype == np.float16
  a, b = written["encoder.layer.0.attention.q_proj"]
  delta = f.delta()
  assert delta.dtype == np.float32  # no fp16 overflow/rounding in the product
  np.testing.assert_allclose(delta, b.astype(np.float64) @ a.astype(np.float64) * f.scale,
                             rtol=1e-5, atol=1e-5)


def test_config_and_factor_errors(tmp_path):
  write_adapter(tmp_path / "rank", config={"r": 8})
  with pytest.raises(ValueError, match=r"q_proj has rank 4, but .*adapter_config.json says r=8"):
    io.read_lora(str(tmp_path / "rank"))
  write_adapter(tmp_path / "half",
                drop="base_model.model.encoder.layer.0.mlp.fc1.lora_B.weight")
  with pytest.raises(ValueError,
                     match=r"without both lora_A and lora_B: \['encoder.layer.0.mlp.fc1'\]"):
    io.read_lora(str(tmp_path / "half"))
  write_adapter(tmp_path / "noconf")
  (tmp_path / "noconf" / "adapter_config.json").unlink()
  with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
    io.read_lora(str(tmp_path / "noconf"))
  write_adapter(tmp_path / "bad", config={"lora_alpha": None})
  (tmp_path / "bad" / "adapter_config.json").write_text(json.dumps({"r": 4}))
  with pytest.raises(ValueError, match=r"missing \['lora_alpha'\]"):
    io.read_lora(str(tmp_path / "bad"))
