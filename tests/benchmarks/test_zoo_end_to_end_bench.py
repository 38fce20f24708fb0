"""benchmarks/zoo_end_to_end.py --quick runs both whole processes and the memory case;
its PyTorch LeNet-5 is jatlas's net (same parameter count and output shape)."""
import pathlib
import sys

import numpy as np
import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def test_zoo_end_to_end_quick(bench_rows):
  e2e, mem = bench_rows("zoo_end_to_end.py", "--quick")
  assert e2e["name"] == "end_to_end_4x1" and e2e["members"] == 4 and e2e["epochs"] == 1
  assert e2e["jatlas"] > 0 and e2e["baseline"] > 0
  assert e2e["ratio"] == pytest.approx(e2e["baseline"] / e2e["jatlas"], rel=0.05, abs=0.01)
  assert 0 < e2e["jatlas_train_s"] < e2e["jatlas"]
  # one epoch: near "never digit d" (0.9); a NaN or constant "digit d" run scores <= 0.1
  assert e2e["jatlas_test_acc"] > 0.85 and e2e["torch_test_acc"] > 0.85, e2e
  assert mem["name"] == "peak_memory_8_vs_4" and set(mem["peak_rss_gb"]) == {"4", "8"}
  assert mem["ratio"] == pytest.approx(mem["jatlas"] / mem["baseline"], rel=0.05, abs=0.01)
  for run in mem["runs"].values():
    assert run["waves"] == 1 and run["bytes_written_gb"] > 0, mem


def test_torch_lenet5_matches_jatlas_lenet5():
  torch = pytest.importorskip("torch")
  import jax
  from jatlas import nets
  sys.path.insert(0, str(BENCH))
  from zoo_end_to_end import torch_lenet5
  model = torch_lenet5()
  net = nets.LeNet5(activation="tanh", num_classes=2)
  variables = net.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 1), np.float32))
  n_jax = sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))
  assert sum(p.numel() for p in model.parameters()) == n_jax == 91_266
  assert tuple(model(torch.zeros(3, 1, 32, 32)).shape) == (3, 2)
