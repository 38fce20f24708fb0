"""`jatlas atlas`: build, inspect and compare Model Atlases.

  jatlas atlas build --from-csv FILE | --from-jsonl FILE | --from-zoo DIR... |
                     --from-hub ID... [--from-files FILE...] [--final-only] --out ATLAS.json
      sources may be combined (one atlas); prints nodes, edges per relation,
      placeholders and the edges dropped to break cycles; .graphml also works
  jatlas atlas show ATLAS.json ID [--trait test_acc]
      the model's metadata and traits, parents, children, root, tree size, best in tree
  jatlas atlas compare TRUE.json RECOVERED.json
      edge accuracy by relation: placement, direction, typed (jatlas.atlas.compare)
  jatlas atlas recover ZOO_DIR... --out ATLAS.json [--rows final|all|ID...]
                       [--method jatlas|mother]
      lineage from the weights alone (the zoos' lineage columns are ignored): nodes are
      the final checkpoints of every healthy member (--rows all: every healthy
      checkpoint; or the given node ids <zoo dir name>/<row id>), edges recovered
  jatlas atlas impute ATLAS.json --out FILLED.json [--fields license test_acc] [--evaluate]
      missing traits/metadata from graph neighbours (jatlas.atlas.impute), marked inferred;
      --evaluate also hides 30% of the documented values and scores the fill vs the baseline
  jatlas atlas plot ATLAS.json --out FIG.png|PAGE.html [--highlight ID...]
      a static figure (matplotlib), or one self-contained interactive page (offline)
"""
import json


def _no_extra(rest):
  if rest:
    raise SystemExit(f"unexpected arguments {rest}")


def _build(args, rest):
  from jatlas.atlas import Atlas, from_csv, from_files, from_hub, from_jsonl, from_zoo
  _no_extra(rest)
  if not (args.from_csv or args.from_jsonl or args.from_zoo or args.from_hub or args.from_files):
    raise SystemExit("atlas build: give a source: --from-csv, --from-jsonl, --from-zoo, "
                     "--from-hub or --from-files")
  atlas = Atlas()
  if args.from_zoo:
    from_zoo(args.from_zoo, final_only=args.final_only, atlas=atlas)
  if args.from_files:
    from_files(args.from_files, atlas=atlas)
  if args.from_csv:
    from_csv(args.from_csv, atlas=atlas)
  if args.from_jsonl:
    from_jsonl(args.from_jsonl, atlas=atlas)
  if args.from_hub:
    from_hub(args.from_hub, atlas=atlas)
  atlas.save(args.out)
  print(f"atlas {args.out}: {atlas.summary()}")
  for problem in atlas.validate():
    print(f"  warning: {problem}")


def _load(path):
  from jatlas.atlas import Atlas
  try:
    return Atlas.load(path)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f"error: {e}") from e


def _edge_line(atlas, parent, child, other):
  d, c = atlas.graph.edges[parent, child], atlas.graph.nodes[child]
  confidence = "" if d["confidence"] == 1 else f", confidence {d['confidence']:.2f}"
  # an import that guessed the relation leaves the child's meta "relation" undocumented
  guessed = "relation" in c["meta"] and "relation" not in c["documented"]
  return (f"    {other}  {d['relation']} ({d['provenance']}{confidence}"
          f"{', relation inferred' if guessed else ''})")


def show_lines(atlas, node_id: str, trait: str = "test_acc") -> list[str]:
  """What `jatlas atlas show` prints about one model."""
  from jatlas.atlas import queries
  node = atlas.node(node_id)
  documented = set(node["documented"])
  tag = lambda k: "" if k in documented else "  (inferred)"  # noqa: E731
  lines = [f"{node_id}{'  (placeholder)' if node['placeholder'] else ''}",
           f"  source: {json.dumps(node['source'], sort_keys=True)}"]
  for group in ("traits", "meta"):
    if node[group]:
      lines.append(f"  {group}:")
      lines += [f"    {k}: {v}{tag(k)}" for k, v in sorted(node[group].items())]
  lines.append(f"  parents: {len(atlas.parents(node_id))}")
  lines += [_edge_line(atlas, p, node_id, p) for p in atlas.parents(node_id)]
  lines.append(f"  children: {len(atlas.children(node_id))}")
  lines += [_edge_line(atlas, node_id, c, c) for c in atlas.children(node_id)]
  sub = queries.tree(atlas, node_id)
  lines += [f"  root: {queries.root(atlas, node_id)}", f"  tree size: {len(sub)}"]
  best = queries.best_in_tree(atlas, node_id, trait)
  if best is not None:
    lines.append(f"  best in tree by {trait}: {best[0]} ({best[1]:.4g})")
  return lines


def _show(args, rest):
  from jatlas.atlas.graph import UnknownNodeError
  _no_extra(rest)
  atlas = _load(args.atlas)
  try:
    print("\n".join(show_lines(atlas, args.id, args.trait)))
  except UnknownNodeError as e:
    raise SystemExit(f"error: {e}") from e


def _compare(args, rest):
  from jatlas.atlas.compare import compare
  _no_extra(rest)
  table = compare(_load(args.true), _load(args.recovered))
  print(f"edge accuracy of {args.recovered} against {args.true}")
  print(table.to_string(float_format=lambda v: f"{v:.3f}"))


def _recover(args, rest):
  from jatlas.atlas.graph import UnknownNodeError
  from jatlas.zoo.store import ZooFormatError
  _no_extra(rest)
  from jatlas.atlas.recover_zoos import recover_atlas
  try:
    atlas = recover_atlas(args.zoo_dirs, args.rows, args.method)
  except (UnknownNodeError, ZooFormatError, ValueError) as e:
    raise SystemExit(f"error: {e}") from e
  atlas.save(args.out)
  print(f"atlas {args.out} (recovered by {args.method}): {atlas.summary()}")


def _impute(args, rest):
  from jatlas.atlas.impute import evaluate_imputation, impute
  _no_extra(rest)
  atlas = _load(args.atlas)
  try:
    filled, report = impute(atlas, args.fields)
    scores = evaluate_imputation(atlas, args.fields) if args.evaluate else None
  except (KeyError, ValueError) as e:
    raise SystemExit(f"error: {e}") from e
  filled.save(args.out)
  counts = report.groupby(["field", "method"]).size() if len(report) else {}
  print(f"atlas {args.out}: {len(report)} values imputed")
  for (field, method), n in dict(counts).items():
    print(f"  {field}: {n} by {method}")
  if scores is not None:
    print(scores.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _plot(args, rest):
  _no_extra(rest)
  atlas = _load(args.atlas)
  if args.out.endswith(".html"):
    from jatlas.atlas.page import write_page
    write_page(atlas, args.out, title=f"Model Atlas: {args.atlas}")
  else:
    from jatlas.atlas.draw import draw_static
    try:
      draw_static(atlas, args.out, highlight=args.highlight)
    except ValueError as e:
      raise SystemExit(f"error: {e}") from e
  print(f"wrote {args.out} ({len(atlas)} models)")


def add_parsers(sub):
  """Registers `jatlas atlas build|recover|impute|show|plot|compare` (argparse only; imports lazily)."""
  atlas = sub.add_parser("atlas", help="Model Atlas: build, recover, impute, show, plot, compare").add_subparsers(
      dest="cmd", required=True)
  build = atlas.add_parser("build", help="an atlas from documented lineage")
  build.add_argument("--from-csv", metavar="FILE", help="current_model,base_model,... dump")
  build.add_argument("--from-jsonl", metavar="FILE", help="the same as JSON lines")
  build.add_argument("--from-zoo", nargs="+", metavar="DIR", help="zoo directories")
  build.add_argument("--from-hub", nargs="+", metavar="ID", help="Hub repo ids (their cards)")
  build.add_argument("--from-files", nargs="+", metavar="FILE",
                     help="safetensors files (merged ones carry their parents)")
  build.add_argument("--final-only", action="store_true",
                     help="zoos: only each member's final checkpoint")
  build.add_argument("--out", required=True, metavar="ATLAS.json", help=".json or .graphml")
  build.set_defaults(fn=_build)
  show = atlas.add_parser("show", help="one model: metadata, family, tree, best in tree")
  show.add_argument("atlas")
  show.add_argument("id")
  show.add_argument("--trait", default="test_acc", help="trait ranking the tree (default test_acc)")
  show.set_defaults(fn=_show)
  cmp = atlas.add_parser("compare", help="edge accuracy of a recovered atlas")
  cmp.add_argument("true")
  cmp.add_argument("recovered")
  cmp.set_defaults(fn=_compare)
  rec = atlas.add_parser("recover", help="lineage of zoo checkpoints from their weights")
  rec.add_argument("zoo_dirs", nargs="+", metavar="ZOO_DIR")
  rec.add_argument("--out", required=True, metavar="ATLAS.json", help=".json or .graphml")
  rec.add_argument("--rows", nargs="+", default=["final"], metavar="final|all|ID",
                   help="final (default): each healthy member's final checkpoint; all: "
                        "every healthy checkpoint; or node ids <zoo dir name>/<row id>")
  rec.add_argument("--method", choices=("jatlas", "mother"), default="jatlas",
                   help="jatlas (recover_lineage, default) or MoTHer (mother_baseline)")
  rec.set_defaults(fn=_recover)
  imp = atlas.add_parser("impute", help="fill missing traits/metadata from the graph")
  imp.add_argument("atlas")
  imp.add_argument("--out", required=True, metavar="ATLAS.json")
  imp.add_argument("--fields", nargs="+", default=None, help="default: every field seen")
  imp.add_argument("--evaluate", action="store_true",
                   help="also score imputation on hidden documented values vs the baseline")
  imp.set_defaults(fn=_impute)
  plot = atlas.add_parser("plot", help="draw an atlas: .png/.pdf/.svg figure or .html page")
  plot.add_argument("atlas")
  plot.add_argument("--out", required=True, metavar="FIG.png|PAGE.html")
  plot.add_argument("--highlight", nargs="+", default=None, metavar="ID")
  plot.set_defaults(fn=_plot)
