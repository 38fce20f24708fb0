"""Rows of the members table and the per-evaluation population summary.

Columns of members.parquet (one row per member and saved checkpoint):
  id            row id "m00003@e0002" (member_id@e<epoch>)
  member_id     "m00003"; member: the member's index (0..members-1)
  seed          the member's seed
  task          task name; task_index: its index in the manifest's `tasks`
  lr, weight_decay, optimizer (name), init_scale   the member's hyper-parameters
  epochs        the member's training length; batch_size; shared_order (one batch order for all)
  epoch, step   epoch of this checkpoint and the global step at it
  final         True on the member's last checkpoint (epoch == epochs)
  shard, index  the shard file holding its tensors and its position on the shard's member axis
  {train,val,test}_{loss,acc,bacc}   metrics at this checkpoint (bacc: balanced accuracy)
  status        "ok" or "diverged" (rule: jatlas.zoo.step); diverged_step: -1 if never
  model, dataset  net and dataset names
  parent_id, parent_zoo   lineage: the parent checkpoint's row id and zoo directory ("" if none)
  relation      relation to the parent (e.g. "finetune"; "" without a parent)
  reinit        comma-joined modules re-initialised when fine-tuning ("" without a parent)
"""
import numpy as np

from jatlas.zoo.population import OPTIMIZERS, PopulationSpec

METRICS = tuple(f"{split}_{m}" for split in ("train", "val", "test")
                for m in ("loss", "acc", "bacc"))


def member_id(member: int) -> str:
  return f"m{member:05d}"


def row_id(member: int, epoch: int) -> str:
  return f"{member_id(member)}@e{epoch:04d}"


def checkpoint_rows(spec: PopulationSpec, cfg, epoch: int, step: int, shard: str,
                    metrics: dict, alive, diverged_step, parents,
                    members: tuple[int, int] | None = None) -> list[dict]:
  """One row per member whose training reaches `epoch` (its final weights included).
  members: the [start, stop) range the shard and the per-member arrays (metrics,
  alive, diverged_step) hold (a wave); default all."""
  a, b = members or (0, len(spec))
  rows = []
  for m in a + np.flatnonzero(spec.epochs[a:b] >= epoch):
    i = m - a
    parent_id, parent_zoo = (parents.row_ids[spec.parent_index[m]], parents.dir) if parents \
        else ("", "")
    rows.append({
        "id": row_id(m, epoch), "member_id": member_id(m), "member": int(m),
        "seed": int(spec.seed[m]), "task": str(spec.task_name[m]),
        "task_index": int(spec.task[m]), "lr": float(spec.lr[m]),
        "weight_decay": float(spec.weight_decay[m]),
        "optimizer": OPTIMIZERS[spec.optimizer[m]], "init_scale": float(spec.init_scale[m]),
        "epochs": int(spec.epochs[m]), "batch_size": int(cfg.zoo.batch_size),
        "shared_order": bool(cfg.zoo.shared_order),
        "epoch": int(epoch), "step": int(step),
        "final": bool(epoch == spec.epochs[m]),
        "shard": shard, "index": int(i),
        **{k: float(metrics[k][i]) for k in METRICS},
        "status": "ok" if alive[i] else "diverged", "diverged_step": int(diverged_step[i]),
        "model": cfg.model.name, "dataset": cfg.data.name,
        "parent_id": parent_id, "parent_zoo": parent_zoo,
        "relation": cfg.zoo.relation if parents else "",
        "reinit": ",".join(cfg.zoo.reinit) if parents else "",
    })
  return rows


def eval_summary(epoch: int, step: int, metrics: dict, alive) -> dict:
  """Population statistics of one evaluation (one JSON line of metrics.jsonl)."""
  ok = np.asarray(alive, bool)
  out = {"epoch": int(epoch), "step": int(step), "alive": int(ok.sum()),
         "diverged": int((~ok).sum())}
  for k in METRICS:
    v = np.asarray(metrics[k])[ok]
    v = v[np.isfinite(v)]
    out[f"{k}_mean"] = float(v.mean()) if len(v) else None
    out[f"{k}_max"] = float(v.max()) if len(v) else None
  return out
