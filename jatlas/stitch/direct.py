"""Direct matching: the least-squares stitch, fitted to representations alone
(Csiszárik et al. 2021), as an answer or as the starting point of task training.

For a 1x1 (or Dense) stitch, every position of every example is one row:
  [h_send, 1] @ [W; b] ~ h_recv   over rows [N*H*W, C]  (lstsq)

Usage:
  params = direct_match(h_send_NHWC, h_recv_NHWC)    # {"conv": {"kernel", "bias"}}
  params = direct_match(h_send_ND, h_recv_ND)        # {"dense": {...}}
"""
import numpy as np


def direct_match(h_send, h_recv, ridge: float = 1e-6) -> dict:
  """Params of `Stitch(out_shape, kernel=1)` minimising |stitch(h_send) - h_recv|^2."""
  h_send, h_recv = np.asarray(h_send, np.float64), np.asarray(h_recv, np.float64)
  if h_recv.ndim == 2:
    x, y, name = h_send.reshape(len(h_send), -1), h_recv, "dense"
  elif h_send.shape[:-1] == h_recv.shape[:-1]:
    x, y, name = h_send.reshape(-1, h_send.shape[-1]), h_recv.reshape(-1, h_recv.shape[-1]), "conv"
  else:
    raise ValueError(f"direct_match: sender {h_send.shape} and receiver {h_recv.shape} need "
                     f"the same spatial size (1x1 stitch) or a vector receiver")
  xa = np.concatenate([x, np.ones((len(x), 1))], 1)
  # ridge-regularised normal equations: stable when sender channels are collinear
  wb = np.linalg.solve(xa.T @ xa + ridge * len(xa) * np.eye(xa.shape[1]), xa.T @ y)
  kernel, bias = wb[:-1].astype(np.float32), wb[-1].astype(np.float32)
  if name == "conv":
    kernel = kernel.reshape(1, 1, *kernel.shape)
  return {name: {"kernel": kernel, "bias": bias}}
