"""The `jatlas` command line.

  jatlas zoo train --config configs/hypernet_digits.py[:smoke] --out DIR [--config.zoo.members=64]
  jatlas zoo train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   # per host
  jatlas zoo info DIR
  jatlas zoo verify DIR                            # shard checksums against zoo.json
  jatlas zoo push DIR REPO_ID [--private]          # a zoo as a Hub dataset repo
  jatlas convert torch2jax IN.safetensors OUT.safetensors
  jatlas convert jax2torch IN.safetensors OUT.safetensors [--arch lenet5 --arch-kwargs '{}'
                           --input-shape 32,32,3]
  jatlas convert jax2torch ZOO_DIR OUT.safetensors --row 3
  jatlas hub card REPO_ID [--revision REV] [--repo-type dataset]
  jatlas similarity ZOO_DIR --rows 0,1 [--metric linear_cka] [--debiased] [--out DIR]
  jatlas merge ties --base BASE.safetensors --models A.safetensors B.safetensors --out M.safetensors
  jatlas atlas build --from-csv FILE | --from-zoo DIR... | --from-hub ID... --out ATLAS.json
  jatlas atlas recover ZOO_DIR... --out ATLAS.json    # lineage from the weights alone
  jatlas atlas impute ATLAS.json --out ATLAS.json
  jatlas atlas show ATLAS.json ID
  jatlas atlas plot ATLAS.json --out FIG.png|PAGE.html
  jatlas atlas compare TRUE.json RECOVERED.json
"""
import argparse
import json
import os
import sys

import numpy as np


def _zoo_train(args, rest):
  import jax
  from jatlas.zoo.sharding import one_cpu_device_per_core
  one_cpu_device_per_core()
  if args.coordinator or args.distributed:  # multi-host: must precede any JAX computation
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  from jatlas.config import load_config
  from jatlas.zoo.train import train_zoo
  cfg = load_config([f"--config={args.config}", *rest])
  zoo = train_zoo(cfg, args.out, progress=not args.no_progress)
  if jax.process_index() == 0:
    print(zoo_summary(zoo))


def zoo_summary(zoo) -> str:
  """A few lines a researcher wants after training: size, health, accuracy per epoch."""
  t, m = zoo.table, zoo.manifest
  n_params = sum(int(np.prod(s["shape"])) for k, s in m["tensors"].items()
                 if k.startswith("params/"))
  lines = [f"zoo {zoo.dir}",
           f"  model {m['model']['name']} ({n_params:,} params), data {m['data']['name']}, "
           f"{len(m['tasks'])} tasks, {m['members']} members, {len(t)} checkpoints",
           f"  diverged members: {int((t[t['final']]['status'] != 'ok').sum())}",
           "  epoch  test_acc(mean/max)  test_balanced_acc(mean/max)"]
  for epoch, g in t[t["status"] == "ok"].groupby("epoch"):
    lines.append(f"  {epoch:5d}  {g.test_acc.mean():.3f}/{g.test_acc.max():.3f}"
                 f"         {g.test_bacc.mean():.3f}/{g.test_bacc.max():.3f}")
  if "train_seconds" in m:
    lines.append(f"  trained in {m['train_seconds']:.0f} s")
  return "\n".join(lines)


def _zoo_info(args, rest):
  from jatlas.zoo.store import Zoo
  if rest:
    raise SystemExit(f"unexpected arguments {rest}")
  zoo = Zoo.open(args.dir)
  print(zoo_summary(zoo))
  size = sum(os.path.getsize(os.path.join(zoo.dir, s["file"])) for s in zoo.manifest["shards"])
  print(f"  {len(zoo.manifest['shards'])} shards, {size / 2**20:.1f} MiB")
  if args.json:
    print(json.dumps({k: v for k, v in zoo.manifest.items() if k != "tensors"}, indent=1))


def _no_extra(rest):
  if rest:
    raise SystemExit(f"unexpected arguments {rest}")


def _zoo_verify(args, rest):
  from jatlas.zoo.store import Zoo, ZooFormatError
  _no_extra(rest)
  try:
    zoo = Zoo.open(args.dir, verify=True)
  except ZooFormatError as e:
    raise SystemExit(f"error: {e}") from e
  print(f"ok: {len(zoo.manifest['shards'])} shards verified")


def _zoo_push(args, rest):
  from jatlas.io import hub
  _no_extra(rest)
  info = hub.push_zoo(args.dir, args.repo_id, private=args.private or None,
                      commit_message=args.message)
  print(getattr(info, "commit_url", info))


def _convert_torch2jax(args, rest):
  from jatlas import io
  _no_extra(rest)
  variables = io.load_torch(args.input, strict=not args.no_strict)
  io.save_safetensors(args.output, variables, {"format": "flax"})
  n = len(io.tensor_shapes(args.output))
  print(f"wrote {n} tensors in flax layout to {args.output}")


def _jax2torch_state_dict(args) -> dict:
  """The torch state dict of a zoo row, a jatlas net's variables, or any variables."""
  from jatlas import flat_names, io, nets
  from jatlas.zoo.store import Zoo
  shape = args.input_shape and tuple(int(d) for d in args.input_shape.split(","))
  if os.path.isdir(args.input):
    if args.row is None:
      raise SystemExit(f"{args.input} is a zoo: pass --row (a row of its members table)")
    return io.member_to_torch(Zoo.open(args.input), args.row, input_shape=shape)
  variables = flat_names.unflatten_variables(io.load_file(args.input))
  if args.arch is None:
    return io.to_state_dict(variables)
  if shape is None:
    raise SystemExit("--arch needs --input-shape (one example, e.g. 32,32,3)")
  net = nets.build(args.arch, **json.loads(args.arch_kwargs))
  return io.to_torch(net, variables, input_shape=shape)


def _convert_jax2torch(args, rest):
  from jatlas import io
  _no_extra(rest)
  state_dict = _jax2torch_state_dict(args)
  io.save_safetensors(args.output, state_dict, {"format": "pt"})
  print(f"wrote {len(state_dict)} tensors in torch layout to {args.output}")


def _hub_card(args, rest):
  from jatlas.io import hub
  _no_extra(rest)
  meta = hub.read_card(args.repo_id, revision=args.revision, repo_type=args.repo_type)
  print(json.dumps(meta.to_json(), indent=1, sort_keys=True, default=str))


def _add_interop(sub, zoo):
  """The io subcommands: zoo push, convert torch2jax|jax2torch, hub card."""
  push = zoo.add_parser("push", help="publish a zoo directory as a Hub dataset repo")
  push.add_argument("dir")
  push.add_argument("repo_id")
  push.add_argument("--private", action="store_true")
  push.add_argument("--message", help="commit message")
  push.set_defaults(fn=_zoo_push)
  convert = sub.add_parser("convert", help="convert checkpoints between torch and jatlas")
  convert = convert.add_subparsers(dest="cmd", required=True)
  t2j = convert.add_parser("torch2jax", help="torch names/layouts -> flax (params/..., HWIO)")
  t2j.add_argument("input", help=".safetensors file, sharded index .json or folder")
  t2j.add_argument("output")
  t2j.add_argument("--no-strict", action="store_true", help="drop tensors no rule converts")
  t2j.set_defaults(fn=_convert_torch2jax)
  j2t = convert.add_parser("jax2torch", help="flax variables or a zoo member -> torch state dict")
  j2t.add_argument("input", help="flax-layout .safetensors file, or a zoo directory")
  j2t.add_argument("output")
  j2t.add_argument("--row", type=int, help="zoo input: the members-table row to convert")
  j2t.add_argument("--arch", help="jatlas net name (nets.NETS) for its torch twin's layout")
  j2t.add_argument("--arch-kwargs", default="{}", help="JSON kwargs of the net")
  j2t.add_argument("--input-shape", help="one example's shape, e.g. 32,32,3")
  j2t.set_defaults(fn=_convert_jax2torch)
  hub = sub.add_parser("hub", help="Hugging Face Hub").add_subparsers(dest="cmd", required=True)
  card = hub.add_parser("card", help="print a repo card's metadata (base_model, license, ...)")
  card.add_argument("repo_id")
  card.add_argument("--revision")
  card.add_argument("--repo-type", default="model", choices=("model", "dataset"))
  card.set_defaults(fn=_hub_card)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="jatlas", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="group", required=True)
  zoo = sub.add_parser("zoo", help="train and inspect model zoos").add_subparsers(
      dest="cmd", required=True)
  train = zoo.add_parser(
      "train", help="train a zoo from a config (resumes if interrupted)",
      description="Train a zoo from a config file; rerun the same command to resume.",
      epilog="example:\n  jatlas zoo train --config configs/hypernet_digits.py:smoke "
             "--out runs/smoke --config.zoo.members=40 \"--config.zoo.lr=(1e-3, 3e-3)\"\n"
             "fields and defaults: jatlas/zoo/schema.py",
      formatter_class=argparse.RawDescriptionHelpFormatter)
  train.add_argument("--config", required=True, metavar="FILE[:VARIANT]",
                     help="Python config file (get_config(variant)); override any field "
                          "with --config.<group>.<field>=VALUE")
  train.add_argument("--out", required=True, help="zoo directory to write")
  train.add_argument("--no-progress", action="store_true")
  dist = train.add_argument_group("multi-host (jax.distributed)")
  dist.add_argument("--distributed", action="store_true",
                    help="jax.distributed.initialize() with cluster auto-detection")
  dist.add_argument("--coordinator", help="HOST:PORT of process 0")
  dist.add_argument("--num-processes", type=int)
  dist.add_argument("--process-id", type=int)
  train.set_defaults(fn=_zoo_train)
  info = zoo.add_parser("info", help="summarise a zoo directory")
  info.add_argument("dir")
  info.add_argument("--json", action="store_true", help="also print the manifest")
  info.set_defaults(fn=_zoo_info)
  verify = zoo.add_parser("verify", help="recompute every shard's sha256 against zoo.json")
  verify.add_argument("dir")
  verify.set_defaults(fn=_zoo_verify)
  _add_interop(sub, zoo)
  from jatlas import cli_representations  # argparse only: its commands import lazily
  cli_representations.add_parsers(sub)
  from jatlas import cli_atlas  # argparse only: its commands import lazily
  cli_atlas.add_parsers(sub)
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  args.fn(args, rest)


if __name__ == "__main__":
  main()
