"""Train the stitches of one (sender tap, receiver tap) pair between two frozen nets.

The stitched forward pass is
  receiver.apply(vr, stitch(sender.apply(vs, x, stop=send_tap)), start=recv_tap)
and only the stitch trains: sender and receiver variables (BatchNorm statistics
included, used as running averages) stay frozen, shared by every member and never
copied. Members differ by seed; a pair is one `Job` of `train_jobs` (many pairs at once:
`jatlas.stitch.population`), the sender's features computed once, not every step.
target="task": cross-entropy through the receiver (task-loss matching);
target="mse": the stitch fitted to the receiver's own representation at recv_tap
(the sanity control of Hernandez et al.: does a task-trained stitch hack the receiver?).
init="direct": every member starts from the least-squares stitch (`direct_match`).

Usage:
  res = train_stitches(sender, vs, receiver, vr, "conv2", "conv2", x_N, y_N,
                       x_test=x_T, y_test=y_T, seeds=(0, 1))  # Adam 1e-3, 30 epochs
  res["test_acc_M"], res["test_mse_M"], res["params"]   # per member; params with a member axis
  stitched_logits(sender, vs, receiver, vr, "conv2", "conv2", stitch_params, x)
"""
from typing import Sequence

from jatlas.stitch.layer import Stitch
from jatlas.stitch.population import Job, train_jobs


def stitched_logits(sender, vs, receiver, vr, send_tap, recv_tap, stitch_params, x,
                    kernel: int = 1, norm: bool = False):
  """The stitched net's logits on x for one stitch's params (no member axis)."""
  h = sender.apply(vs, x, stop=send_tap)
  out_shape = receiver.apply(vr, x[:2], stop=recv_tap).shape[1:]
  h = Stitch(out_shape=tuple(out_shape), kernel=kernel, norm=norm).apply(
      {"params": stitch_params}, h)
  return receiver.apply(vr, h, start=recv_tap)


def train_stitches(sender, vs, receiver, vr, send_tap: str, recv_tap: str, x, y, *,
                   x_test=None, y_test=None, seeds: Sequence[int] = (0,), lr=1e-3,
                   epochs: int = 30, batch_size: int = 128, kernel: int = 1,
                   norm: bool = False, target: str = "task", init: str = "random",
                   optimizer: str = "adam", weight_decay: float = 0.0) -> dict:
  """{"params", "final_loss_M", "seeds"} (+ "test_acc_M", "test_mse_M" with test data)."""
  models = {"sender": (sender, vs), "receiver": (receiver, vr)}
  job = Job("sender", send_tap, "receiver", recv_tap, kernel=kernel, norm=norm, target=target)
  return train_jobs(models, [job], x, y, x_test=x_test, y_test=y_test, seeds=seeds, lr=lr,
                    optimizer=optimizer, weight_decay=weight_decay, epochs=epochs,
                    batch_size=batch_size, init=init)[0]
