"""Model stitching on digits (Hernandez et al. 2023, arXiv 2303.11277) with jatlas's zoo.

Four small ResNets R_abcd (widths 8-16-32-64 on 8x8 digits: stage 1 at 8x8, stage 4
at 1x1), two seeds each, one zoo per architecture; the R1111 zoo also holds members
trained on labels independent of the images (`tasks.label_noise=(0.0, 0.9)`: 90% of
10-class labels redrawn from the 9 others = uniform labels), the shuffled-label sender.
Stitches (1x1 and 3x3 where the resolutions match; strided conv / nearest upsampling +
1x1 where they differ) from every sender tap (stem, block1..B) into every receiver tap,
for each architecture into itself across seeds (s0 -> s1) and one cross-architecture
pair per architecture (a ring: R1111 -> R1112 -> R1121 -> R2111 -> R1111), plus the
sanity controls on R1111/s0 -> R1111/s1: a random-init sender (R1111/s0 at epoch 0,
the zoo's saved initialisation), the shuffled-label sender, and stitches fitted to the
receiver's own representation (target "mse").
All stitches train in one `stitch_matrices` call: one program per receiver tap.

Commands:
  python experiments/stitching.py --config configs/stitching.py --out runs/stitching
  python experiments/stitching.py --config configs/stitching.py:smoke --out runs/smoke
Anchor (Hernandez et al., CIFAR-10, ResNets >90%): last block of R1111 into every
receiver layer 0.92-0.93; first (stem) sender into the last receiver layer ~0.3
(0.91, 0.54, 0.39, 0.34, 0.32 along the receiver's layers); a random sender stitches
well only into early receiver layers.
Expected: see the README's stitching table (the command above, 2-core CPU). The smoke
variant (R1 and R2, one stage; 2-3 sender x 2 receiver taps, 3 + 1 epochs) takes ~1.5 min.
"""
import ml_collections

from jatlas.zoo.schema import default_config

ARCHS = ("R1111", "R1112", "R1121", "R2111")
WIDTHS = (8, 16, 32, 64)
SHUFFLE_RATE = 0.9  # with 10 classes: every label uniform, independent of the image


def zoo_config(arch: str, index: int, seeds: int, epochs: int,
               shuffled: bool) -> ml_collections.ConfigDict:
  """One architecture's zoo: `seeds` members (x2 with shuffled-label members, which
  alternate with the clean ones: member 2i clean, 2i+1 shuffled)."""
  c = default_config()  # every field and its meaning: jatlas/zoo/schema.py
  c.name = f"stitching_{arch}"
  widths = WIDTHS[:len(arch) - 1]  # one per stage: "R1111" has 4
  c.model.name, c.model.kwargs = "resnet", {"arch": arch, "widths": widths}
  c.tasks.kind = "multiclass"
  if shuffled:
    c.tasks.label_noise = (0.0, SHUFFLE_RATE)
  c.zoo.members, c.zoo.seed = seeds * (2 if shuffled else 1), index  # distinct seeds
  c.zoo.epochs, c.zoo.save_epochs = (epochs,), (0,)  # epoch 0: the random-init senders
  c.zoo.batch_size, c.zoo.lr = 32, (3e-3,)
  c.zoo.checkpoint_every = 0  # zoos of seconds: resuming would cost more than it saves
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg not in (None, "", "smoke"):
    raise ValueError(f"unknown config variant {arg!r}; expected '' or 'smoke'")
  smoke = arg == "smoke"
  # smoke: two 1-stage nets (one or two 8x8 blocks), whose programs compile in a fraction
  archs = ("R1", "R2") if smoke else ARCHS
  c = ml_collections.ConfigDict()
  c.name = "stitching"
  c.archs = archs
  c.seeds = 2                     # models per architecture: <arch>/s0, <arch>/s1
  c.control_arch = archs[0]       # controls on <arch>/s0 -> <arch>/s1
  c.zoos = ml_collections.ConfigDict({
      a: zoo_config(a, i, c.seeds, 3 if smoke else 30, shuffled=a == c.control_arch)
      for i, a in enumerate(archs)})
  c.stitch = ml_collections.ConfigDict({
      # "all": stem and every block; "few": stem, the middle and the last block
      "send_taps": "few" if smoke else "all",
      "recv_taps": "ends" if smoke else "all",   # "ends": stem and the last block
      "kernels": (1, 3),
      "seeds": (0,),
      # Adam (Csiszarik et al.'s stitch optimizer); 10 epochs of 1,293 digits = 210
      # steps at batch 64 (Hernandez: 4 CIFAR-10 epochs at batch 256, ~780 steps). On
      # R11 stem -> stem of another seed, 210 steps reach 0.36-0.50 at lr 1e-2, 0.64-0.71
      # at 3e-2, 0.59-0.71 at 1e-1
      "optimizer": "adam", "lr": 3e-2, "weight_decay": 0.0,
      "epochs": 1 if smoke else 10, "batch_size": 64,
  })
  return c
