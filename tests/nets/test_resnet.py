"""ResNet: eval/train parity with a torch twin; taps; batch_stats; names."""
import copy
import functools

import chex
import jax
import numpy as np
import pytest
import torch

import torch_copy
import torch_twins
from jatlas.nets import ResNet, resnet_from_name, stage_blocks_from_name

WIDTHS = (16, 32, 64, 128)
N, H, W, C = 4, 8, 8, 3
K = 10


def _put(tree: dict, path: tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def copy_weights(twin: torch_twins.ResNet) -> dict:
  params, stats = {}, {}
  modules = [((name,), getattr(twin, name))
             for name in ("stem_conv", "stem_bn", "head")]
  modules += [((f"block{k}", name), m) for k in range(1, twin.n + 1)
              for name, m in getattr(twin, f"block{k}").named_children()]
  for path, m in modules:
    if isinstance(m, torch.nn.BatchNorm2d):
      p, s = torch_copy.batch_norm(m)
      _put(params, path, p)
      _put(stats, path, s)
    elif isinstance(m, torch.nn.Linear):
      _put(params, path, torch_copy.linear(m))
    else:
      _put(params, path, torch_copy.conv(m))
  return {"params": params, "batch_stats": stats}


def make_case(arch: str):
  torch.manual_seed(0)
  twin = torch_twins.ResNet(C, stage_blocks_from_name(arch), WIDTHS, K).eval()
  torch_twins.randomize_batch_norms(twin)
  x_NHWC = np.random.default_rng(0).normal(size=(N, H, W, C)).astype(np.float32)
  net = resnet_from_name(arch, widths=WIDTHS, num_classes=K)
  variables = copy_weights(twin)
  torch_copy.check_variables(net, variables, x_NHWC)
  return twin, net, variables, x_NHWC


@pytest.fixture(scope="module", params=["R1121", "R2222"])
def case(request):
  return make_case(request.param)


def torch_and_jax(case):
  twin, net, variables, x_NHWC = case
  return torch_copy.run_twins(net, variables, x_NHWC, twin, torch_copy.nchw(x_NHWC))


def test_eval_logits_match_torch(case):
  expected_NK, logits_NK, _ = torch_and_jax(case)
  np.testing.assert_allclose(logits_NK, expected_NK, atol=1e-5, rtol=1e-5)


def test_train_mode_matches_torch_and_updates_batch_stats(case):
  twin, net, variables, x_NHWC = case
  twin = copy.deepcopy(twin).train()
  with torch.no_grad():
    expected_NK = twin(torch_copy.nchw(x_NHWC)).numpy()
  logits_NK, updates = net.apply(variables, x_NHWC, train=True,
                                 mutable=["batch_stats"])
  np.testing.assert_allclose(logits_NK, expected_NK, atol=1e-5, rtol=1e-5)
  new = updates["batch_stats"]["block1"]["bn1"]
  old = variables["batch_stats"]["block1"]["bn1"]
  torch_bn = twin.block1.bn1
  np.testing.assert_allclose(new["mean"], torch_bn.running_mean, atol=1e-6)
  # torch stores the unbiased batch variance, flax the biased one (n = N*H*W).
  n = N * H * W
  batch_var_unbiased = (torch_bn.running_var.numpy() - 0.9 * old["var"]) / 0.1
  np.testing.assert_allclose(
      new["var"], 0.9 * old["var"] + 0.1 * batch_var_unbiased * (n - 1) / n,
      atol=1e-5)
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                         updates["batch_stats"], variables["batch_stats"])
  assert all(jax.tree.leaves(changed))


def test_taps_r1121():
  net = resnet_from_name("R1121", widths=WIDTHS, num_classes=K)
  _, taps = jax.eval_shape(
      functools.partial(net.init_with_output, return_taps=True),
      jax.random.key(0), np.zeros((N, H, W, C), np.float32))[0]
  assert list(taps) == ["stem", "block1", "block2", "block3", "block4",
                        "block5", "pool", "logits"]
  chex.assert_shape(list(taps.values()), [
      (N, 8, 8, 16), (N, 8, 8, 16), (N, 4, 4, 32), (N, 2, 2, 64),
      (N, 2, 2, 64), (N, 1, 1, 128), (N, 128), (N, K)])


def test_projection_only_where_shape_changes():
  params = jax.eval_shape(resnet_from_name("R2222").init, jax.random.key(0),
                          np.zeros((1, 8, 8, 3), np.float32))["params"]
  with_proj = [k for k, v in params.items() if "proj_conv" in v]
  assert with_proj == ["block3", "block5", "block7"]
  assert sorted(params["block1"]) == ["bn1", "bn2", "conv1", "conv2"]


def test_stage_blocks_from_name():
  assert stage_blocks_from_name("R1121") == (1, 1, 2, 1)
  assert stage_blocks_from_name("resnet10") == (1, 1, 1, 1)
  assert stage_blocks_from_name("ResNet18") == (2, 2, 2, 2)
  with pytest.raises(ValueError, match="R1121"):
    stage_blocks_from_name("resnet50")


def test_mismatched_widths_raise():
  net = ResNet(stage_blocks=(1, 1), widths=(8, 16, 32))
  with pytest.raises(ValueError, match=r"stage_blocks=\(1, 1\)"):
    net.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))
