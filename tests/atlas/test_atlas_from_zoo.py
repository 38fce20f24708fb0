"""Atlases from zoo lineage columns and merged files: a tiny base zoo and its fine-tunes."""
import os

import numpy as np
import pytest

from jatlas import merge
from jatlas.atlas import queries
from jatlas.atlas.from_local import from_files, from_zoo, lineage_columns
from jatlas.config import load_config
from jatlas.io import save_safetensors
from jatlas.zoo import train_zoo
from jatlas.zoo.rows import METRICS

TINY = os.path.join(os.path.dirname(__file__), "..", "zoo", "tiny_config.py")


def _config(*overrides):
  """The zoo tests' tiny MLP config, 2 members, 1 epoch: a real zoo in a few seconds."""
  return load_config([f"--config={TINY}", "--config.zoo.members=2", "--config.zoo.epochs=(1,)",
                      "--config.zoo.save_epochs=(0, 1)", *overrides])


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
  root = tmp_path_factory.mktemp("atlas_zoos")
  base = train_zoo(_config(), str(root / "base"), progress=False)
  ft = train_zoo(_config("--config.zoo.members=3", f"--config.zoo.parent={base.dir}",
                         "--config.zoo.lr=(1e-3,)"), str(root / "ft"), progress=False)
  return base, ft


def test_every_row_is_a_node_with_source_traits_meta(zoos):
  base, ft = zoos
  atlas = from_zoo([base.dir, ft.dir])
  assert len(atlas) == len(base.table) + len(ft.table) == 4 + 6
  assert atlas.placeholders() == []
  for zoo, name in ((base, "base"), (ft, "ft")):
    for r, row in zoo.table.iterrows():
      node = atlas.node(f"{name}/{row['id']}")
      assert node["source"] == {"kind": "zoo", "dir": os.path.abspath(zoo.dir), "row": r}
      assert node["traits"] == {k: float(row[k]) for k in METRICS}
      assert node["meta"]["member_id"] == row["member_id"]
      assert node["meta"]["epoch"] == row["epoch"] and node["meta"]["task"] == row["task"]
      assert "parent_id" not in node["meta"] and "shard" not in node["meta"]
      assert set(node["documented"]) == set(node["traits"]) | set(node["meta"])
  assert atlas.validate() == []


def test_lineage_columns_are_reproduced_exactly(zoos):
  base, ft = zoos
  atlas = from_zoo([base.dir, ft.dir])
  for zoo, name in ((base, "base"), (ft, "ft")):
    got = lineage_columns(atlas, name).set_index("id").sort_index()
    t = zoo.table.set_index("id").sort_index()
    want = t[["parent_id", "parent_zoo", "relation"]].copy()
    want["parent_zoo"] = [os.path.basename(p) for p in want.parent_zoo]
    assert got.to_dict("index") == want.to_dict("index")
  assert (ft.table.parent_id != "").all()


def test_edges_are_lineage_then_continued_training(zoos):
  base, ft = zoos
  atlas = from_zoo([base.dir, ft.dir])
  want = set()
  for name, t in (("base", base.table), ("ft", ft.table)):
    for _, m in t.sort_values("epoch").groupby("member"):
      ids = [f"{name}/{i}" for i in m["id"]]
      want |= {(a, b, "finetune") for a, b in zip(ids, ids[1:])}
      if m.parent_id.iloc[0]:
        want.add((f"base/{m.parent_id.iloc[0]}", ids[0], m.relation.iloc[0]))
  assert set(atlas.graph.edges(data="relation")) == want
  assert len(want) == 2 + 3 + 3
  first_ft = ft.table.id[(ft.table.member == 0) & (ft.table.epoch == 1)].iloc[0]
  assert queries.root(atlas, f"ft/{first_ft}") == "base/m00000@e0000"


def test_final_only_links_final_checkpoints_to_their_parents(zoos):
  base, ft = zoos
  atlas = from_zoo([base.dir, ft.dir], final_only=True)
  assert len(atlas) == 2 + 3
  finals = ft.table[ft.table.final]
  assert sorted(atlas.graph.edges(data="relation")) == sorted(
      (f"base/{p}", f"ft/{c}", r) for p, c, r in zip(finals.parent_id, finals.id, finals.relation))


def test_absent_parent_zoo_gives_placeholders_and_clashing_names_are_refused(zoos, tmp_path):
  base, ft = zoos
  atlas = from_zoo(ft.dir)
  parents = sorted({f"base/{p}" for p in ft.table.parent_id})
  assert sorted(atlas.placeholders()) == parents
  assert atlas.node(parents[0])["source"] == {"kind": "zoo", "dir": os.path.abspath(base.dir)}
  atlas = from_zoo(base.dir, atlas=atlas)  # the placeholders become the real checkpoints
  assert atlas.placeholders() == [] and atlas.validate() == []
  os.makedirs(tmp_path / "other")
  os.symlink(base.dir, tmp_path / "other" / "base")
  with pytest.raises(ValueError, match=r"names \['base'\] repeat"):
    from_zoo([base.dir, str(tmp_path / "other" / "base")])


def test_merged_files_link_to_every_parent_in_their_recipe(zoos, tmp_path):
  base, ft = zoos
  atlas = from_zoo([base.dir, ft.dir], final_only=True)
  finals = [f"ft/{i}" for i in ft.table.id[ft.table.final]]
  params = [ft.params(r) for r in np.flatnonzero(ft.table.final)]
  merged = str(tmp_path / "soup.safetensors")
  merge.save_merged(merged, merge.average(params), method="average", parents=finals,
                    base=f"base/{base.table.id[base.table.final].iloc[0]}")
  plain = str(tmp_path / "plain.safetensors")
  save_safetensors(plain, params[0])
  atlas = from_files([merged, plain], atlas=atlas)
  assert sorted(atlas.parents("soup")) == sorted(finals)
  assert {r for *_, r in atlas.graph.in_edges("soup", data="relation")} == {"merge"}
  assert atlas.node("soup")["meta"]["merge_method"] == "average"
  assert atlas.node("plain")["source"] == {"kind": "file", "path": plain}
  assert atlas.graph.in_degree("plain") == 0 and atlas.validate() == []
  with pytest.raises(ValueError, match=r"nope.safetensors not found; id 'a' repeats"):
    from_files([merged, plain, "nope.safetensors"], ids=["a", "a", "b"])


def test_build_from_zoo_command_reproduces_the_lineage_columns(zoos, tmp_path, capsys):
  from jatlas.atlas.graph import Atlas
  from jatlas.cli import main
  base, ft = zoos
  out = str(tmp_path / "zoo_atlas.json")
  main(["atlas", "build", "--from-zoo", base.dir, ft.dir, "--out", out])
  assert capsys.readouterr().out.strip() == (
      f"atlas {out}: 10 nodes (0 placeholders), 8 edges (finetune 8), 0 cycle edges dropped")
  got = lineage_columns(Atlas.load(out), "ft").set_index("id").sort_index()
  t = ft.table.set_index("id").sort_index()
  assert got.parent_id.tolist() == t.parent_id.tolist()
  assert got.relation.tolist() == t.relation.tolist()
  assert set(got.parent_zoo) == {os.path.basename(base.dir)}
