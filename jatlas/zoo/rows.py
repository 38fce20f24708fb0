"""Rows of the members table and the per-evaluation population summary."""
import numpy as np

from jatlas.zoo.population import OPTIMIZERS, PopulationSpec

METRICS = tuple(f"{split}_{m}" for split in ("train", "val", "test")
                for m in ("loss", "acc", "bacc"))


def member_id(member: int) -> str:
  return f"m{member:05d}"


def row_id(member: int, epoch: int) -> str:
  return f"{member_id(member)}@e{epoch:04d}"


def checkpoint_rows(spec: PopulationSpec, cfg, epoch: int, step: int, shard: str,
                    metrics: dict, alive, diverged_step, parents) -> list[dict]:
  """One row per member whose training reaches `epoch` (its final weights included)."""
  rows = []
  for m in np.flatnonzero(spec.epochs >= epoch):
    parent_id, parent_zoo = (parents.row_ids[spec.parent_row[m]], parents.dir) if parents \
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
        "shard": shard, "index": int(m),
        **{k: float(metrics[k][m]) for k in METRICS},
        "status": "ok" if alive[m] else "diverged", "diverged_step": int(diverged_step[m]),
        "model": cfg.model.name, "dataset": cfg.data.name,
        "parent_id": parent_id, "parent_zoo": parent_zoo,
        "relation": cfg.zoo.get("relation", "finetune") if parents else "",
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
