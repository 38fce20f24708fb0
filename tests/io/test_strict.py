"""Strict mode: every missing, unexpected and mis-shaped key in one error;
corrupt and truncated files named."""
import jax
import numpy as np
import pytest

import torch_twins
from jatlas import io


@pytest.fixture
def lenet():
  twin, net, x, _ = torch_twins.make("lenet5")
  return {k: v.numpy() for k, v in twin.state_dict().items()}, net, x.shape[1:]


def test_one_error_lists_every_problem(lenet, tmp_path):
  sd, net, shape = lenet
  del sd["conv2.bias"]  # missing
  sd["fc9.weight"] = np.zeros((3, 4), np.float32)  # unexpected
  sd["conv1.lora_magnitude"] = np.zeros(6, np.float32)  # no rule
  sd["fc1.weight"] = np.zeros((84, 700), np.float32)  # mis-shaped (720 expected)
  path = str(tmp_path / "bad.safetensors")
  io.save_safetensors(path, sd)
  with pytest.raises(io.StateDictMismatchError) as info:
    io.from_torch(net, path, input_shape=shape)
  e = info.value
  message = str(e)
  assert message.startswith(f"{path} as LeNet5: 1 missing, 2 unexpected, 1 mis-shaped")
  assert "missing:    params/conv2/bias expected shape (16,)" in message
  assert "unexpected: conv1.lora_magnitude (no rule matches)" in message
  assert "unexpected: params/fc9/kernel (from fc9.weight)" in message
  assert ("mis-shaped: params/fc1/kernel (from fc1.weight): expected (720, 84), "
          "found (700, 84)") in message
  assert (len(e.missing), len(e.unexpected), len(e.mismatched)) == (1, 2, 1)


def test_non_strict_drops_unexpected_allows_missing_but_not_wrong_shapes(lenet):
  sd, net, shape = lenet
  del sd["conv2.bias"]
  sd["fc9.weight"] = np.zeros((3, 4), np.float32)
  variables = io.from_torch(net, sd, input_shape=shape, strict=False)
  assert "fc9" not in variables["params"] and "bias" not in variables["params"]["conv2"]
  sd["fc1.weight"] = np.zeros((84, 700), np.float32)
  with pytest.raises(io.StateDictMismatchError, match=r"0 missing, 0 unexpected, 1 mis-shaped"):
    io.from_torch(net, sd, input_shape=shape, strict=False)


def test_load_torch_against_a_schema(lenet):
  sd, net, shape = lenet
  like = jax.eval_shape(net.init, jax.random.key(0), np.zeros((1, *shape), np.float32))
  sd["conv1.weight"] = sd["conv1.weight"][:, :2]  # 2 input channels, 3 expected
  del sd["head.bias"]
  with pytest.raises(io.StateDictMismatchError) as info:
    io.load_torch(sd, like=like)
  assert info.value.missing == [("params/head/bias", (2,))]
  # The generic loader does not know LeNet5's flatten, so fc1 is fine by shape.
  assert info.value.mismatched == [("params/conv1/kernel (from conv1.weight)",
                                    (5, 5, 3, 6), (5, 5, 2, 6))]


def test_load_torch_without_schema_still_reports_unknown_names():
  sd = {"fc.weight": np.zeros((2, 3), np.float32), "cls_token": np.zeros((1, 4), np.float32),
        "pos_embed": np.zeros((1, 5, 4), np.float32)}
  with pytest.raises(io.StateDictMismatchError,
                     match=r"(?s)0 missing, 2 unexpected.*"
                           r"cls_token \(no rule.*pos_embed \(no rule"):
    io.load_torch(sd)
  assert sorted(io.load_torch(sd, strict=False)["params"]) == ["fc"]


def test_to_torch_checks_the_variables_too():
  _, net, x, _ = torch_twins.make("mlp")
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  variables = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), variables)
  variables["params"]["fc2"]["kernel"] = np.zeros((16, 16), np.float32)
  del variables["params"]["head"]["bias"]
  with pytest.raises(io.StateDictMismatchError,
                     match=r"MLP variables: 1 missing, 0 unexpected, 1 mis-shaped"):
    io.to_torch(net, variables, input_shape=x.shape[1:])


def _truncated(tmp_path, keep: int) -> str:
  """A checkpoint cut to blob[:keep]."""
  path = tmp_path / "cut.safetensors"
  io.save_safetensors(str(path), {"fc1.weight": np.ones((8, 10), np.float32),
                                  "fc1.bias": np.ones(8, np.float32)})
  path.write_bytes(path.read_bytes()[:keep])
  return str(path)


@pytest.mark.parametrize("cut", [-4, 5], ids=["data cut short", "header cut short"])
def test_truncated_file_is_named(tmp_path, cut):
  path = _truncated(tmp_path, cut)
  _, net, x, _ = torch_twins.make("mlp_flat")
  calls = [lambda: io.load_torch(path), lambda: io.read_tensor(path, "fc1.bias"),
           lambda: io.read_layer([path], "fc1.bias"),
           lambda: io.from_torch(net, path, input_shape=x.shape[1:])]
  for call in calls:
    with pytest.raises(io.CheckpointError, match=f"corrupt or truncated safetensors file {path}"):
      call()


def test_garbage_and_missing_files(tmp_path):
  path = tmp_path / "garbage.safetensors"
  path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
  with pytest.raises(io.CheckpointError, match=f"corrupt or truncated .*{path}"):
    io.load_torch(str(path))
  with pytest.raises(io.CheckpointError, match="checkpoint file .*nope.safetensors not found"):
    io.read_tensor(str(tmp_path / "nope.safetensors"), "w")
