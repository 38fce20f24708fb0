"""PyTorch twins of the jatlas nets, named like the nets' params (test helper).

`conv1`, `fc1`, `block2.proj_bn`, `head`: exactly the names jatlas.io.adapters
expects. Twins take NCHW images (CNN1D: NCL signals) and flatten in torch order.
`make(name)` returns (twin, jatlas net, x for jatlas, x for torch).
"""
import jax
import numpy as np
import torch
import torch_copy

from jatlas import nets


class MLP(torch.nn.Module):

  def __init__(self, d_in, hidden, num_classes):
    super().__init__()
    dims = (d_in, *hidden)
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), start=1):
      self.add_module(f"fc{i}", torch.nn.Linear(a, b))
    self.head = torch.nn.Linear(dims[-1], num_classes)
    self.n = len(hidden)

  def forward(self, x):
    h = x.flatten(1)
    for i in range(1, self.n + 1):
      h = torch.relu(getattr(self, f"fc{i}")(h))
    return self.head(h)


class LeNet5(torch.nn.Module):

  def __init__(self, c_in, fc1_in, num_classes):
    super().__init__()
    self.conv1 = torch.nn.Conv2d(c_in, 6, 5, padding=2)
    self.conv2 = torch.nn.Conv2d(6, 16, 5)
    self.conv3 = torch.nn.Conv2d(16, 120, 5)
    self.fc1 = torch.nn.Linear(fc1_in, 84)
    self.head = torch.nn.Linear(84, num_classes)

  def forward(self, x):
    pool = torch.nn.functional.avg_pool2d
    h = pool(torch.tanh(self.conv1(x)), 2)
    h = pool(torch.tanh(self.conv2(h)), 2)
    h = torch.tanh(self.conv3(h)).flatten(1)  # (C, H, W) order
    return self.head(torch.tanh(self.fc1(h)))


class CNN1D(torch.nn.Module):

  def __init__(self, c_in, channels, kernels, head_in, num_classes):
    super().__init__()
    dims = (c_in, *channels)
    for i, (a, b, k) in enumerate(zip(dims[:-1], dims[1:], kernels), start=1):
      self.add_module(f"conv{i}", torch.nn.Conv1d(a, b, k, stride=2, padding=k // 2))
    self.head = torch.nn.Linear(head_in, num_classes)
    self.n = len(channels)

  def forward(self, x_NCL):
    h = x_NCL
    for i in range(1, self.n + 1):
      h = torch.relu(getattr(self, f"conv{i}")(h))
    return self.head(h.flatten(1))  # (C, L) order


class SmallCNN(torch.nn.Module):

  def __init__(self, c_in, channels, num_classes):
    super().__init__()
    dims = (c_in, *channels)
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), start=1):
      self.add_module(f"conv{i}", torch.nn.Conv2d(a, b, 3, stride=2, padding=1))
    self.head = torch.nn.Linear(dims[-1], num_classes)
    self.n = len(channels)

  def forward(self, x):
    for i in range(1, self.n + 1):
      x = torch.relu(getattr(self, f"conv{i}")(x))
    return self.head(x.mean(dim=(2, 3)))


class Block(torch.nn.Module):

  def __init__(self, c_in, c_out, stride):
    super().__init__()
    self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    self.bn1 = torch.nn.BatchNorm2d(c_out)
    self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
    self.bn2 = torch.nn.BatchNorm2d(c_out)
    self.proj = stride != 1 or c_in != c_out
    if self.proj:
      self.proj_conv = torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False)
      self.proj_bn = torch.nn.BatchNorm2d(c_out)

  def forward(self, x):
    h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
    return torch.relu(h + (self.proj_bn(self.proj_conv(x)) if self.proj else x))


class ResNet(torch.nn.Module):

  def __init__(self, c_in, stage_blocks, widths, num_classes):
    super().__init__()
    self.stem_conv = torch.nn.Conv2d(c_in, widths[0], 3, 1, 1, bias=False)
    self.stem_bn = torch.nn.BatchNorm2d(widths[0])
    k, c = 0, widths[0]
    for stage, (n, width) in enumerate(zip(stage_blocks, widths)):
      for b in range(n):
        k += 1
        self.add_module(f"block{k}", Block(c, width, 2 if stage > 0 and b == 0 else 1))
        c = width
    self.n = k
    self.head = torch.nn.Linear(c, num_classes)

  def forward(self, x):
    h = torch.relu(self.stem_bn(self.stem_conv(x)))
    for k in range(1, self.n + 1):
      h = getattr(self, f"block{k}")(h)
    return self.head(h.mean(dim=(2, 3)))


def randomize_batch_norms(model: torch.nn.Module) -> None:
  """Non-trivial affine params and running stats, so eval-mode BN is tested."""
  for m in model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      torch_copy.randomize_batch_norm(m)


def _images(n, h, w, c):
  x_NHWC = np.random.default_rng(1).normal(size=(n, h, w, c)).astype(np.float32)
  return x_NHWC, torch.from_numpy(np.ascontiguousarray(x_NHWC.transpose(0, 3, 1, 2)))


def make(name: str):
  """(torch twin in eval mode, jatlas net, x for jatlas, x for torch)."""
  torch.manual_seed(0)
  if name == "mlp":  # 3 input channels: the NCHW-flatten permutation matters
    x, xt = _images(3, 4, 4, 3)
    return MLP(48, (32, 16), 5).eval(), nets.MLP(hidden=(32, 16), num_classes=5), x, xt
  if name == "mlp_flat":
    x = np.random.default_rng(1).normal(size=(3, 10)).astype(np.float32)
    return MLP(10, (8,), 4).eval(), nets.MLP(hidden=(8,), num_classes=4), x, torch.from_numpy(x)
  if name == "lenet5":  # 36x32 input: conv3 map is 3x2x120; fc1 rows are permuted
    x, xt = _images(2, 36, 32, 3)
    return LeNet5(3, 720, 2).eval(), nets.LeNet5(num_classes=2), x, xt
  if name == "cnn1d":
    x_NL3 = np.random.default_rng(1).normal(size=(3, 40, 2)).astype(np.float32)
    twin = CNN1D(2, (6, 5, 4), (5, 3, 3), 4 * 5, 3).eval()
    net = nets.CNN1D(channels=(6, 5, 4), kernels=(5, 3, 3), num_classes=3)
    x_NCL = torch.from_numpy(np.ascontiguousarray(x_NL3.transpose(0, 2, 1)))
    return twin, net, x_NL3[:, None], x_NCL
  if name == "small_cnn":
    x, xt = _images(2, 12, 12, 2)
    return SmallCNN(2, (8, 8, 8), 4).eval(), nets.SmallCNN(channels=(8, 8, 8), num_classes=4), x, xt
  if name == "resnet":
    x, xt = _images(4, 8, 8, 3)
    twin = ResNet(3, (1, 2, 1, 1), (8, 8, 16, 16), 10)
    randomize_batch_norms(twin)
    net = nets.resnet_from_name("R1211", widths=(8, 8, 16, 16), num_classes=10)
    return twin.eval(), net, x, xt
  raise ValueError(name)


NAMES = ("mlp", "mlp_flat", "lenet5", "cnn1d", "small_cnn", "resnet")


def forward(twin: torch.nn.Module, x_torch) -> np.ndarray:
  with torch.no_grad():
    return twin(x_torch).numpy()


def load_numpy(twin: torch.nn.Module, state_dict: dict) -> None:
  """torch's strict load: fails on any missing or unexpected key."""
  twin.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)


def random_variables(net, x, seed: int = 3) -> dict:
  """Random jatlas variables; BatchNorm statistics positive and away from 0/1."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(net.init, jax.random.key(0), x)
  return jax.tree_util.tree_map_with_path(
      lambda path, s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
      if path[0].key == "batch_stats" else rng.normal(0, 0.3, s.shape).astype(np.float32),
      shapes)
