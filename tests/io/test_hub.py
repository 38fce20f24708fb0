"""Offline Hub: downloads from a fake cache (revisions, allow-patterns), card
metadata from README front matter. Nothing here can reach the network."""
import os
import pathlib

import huggingface_hub as hf
import numpy as np
import pytest
from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

import fake_hub
from jatlas import io
from jatlas.io import hub
from jatlas.io.card import parse_card

CARD = """---
base_model: acme/base
base_model_relation: finetune
license: apache-2.0
pipeline_tag: image-classification
datasets:
- acme/digits
tags: [vision]
---
# tiny
"""


def test_offline_mode_is_on():
  assert hf.constants.HF_HUB_OFFLINE  # set by tests/conftest.py before any import


@pytest.fixture
def cache(tmp_path):
  """Repo acme/tiny: main -> v2 (a checkpoint + card), tag v1 -> an older commit."""
  cache_dir = str(tmp_path / "hub")
  old = fake_hub.add_to_cache(cache_dir, "acme/tiny", {"config.json": '{"v": 1}'}, refs=("v1",))
  new = fake_hub.add_to_cache(
      cache_dir, "acme/tiny",
      {"config.json": '{"v": 2}', "README.md": CARD, "nested/notes.txt": "hi"},
      refs=("main",), listed=("pytorch_model.bin",))
  return cache_dir, old, new


def test_download_revisions(cache):
  cache_dir, old, new = cache
  main = hub.download("acme/tiny", cache_dir=cache_dir, ignore_patterns="*.bin")
  assert main.endswith(os.path.join("snapshots", new))
  assert pathlib.Path(main, "nested", "notes.txt").read_text() == "hi"
  for revision in ("v1", old):  # a tag and a commit hash
    folder = hub.download("acme/tiny", revision=revision, cache_dir=cache_dir,
                          allow_patterns="*.json")
    assert pathlib.Path(folder, "config.json").read_text() == '{"v": 1}'
  path = hub.download_file("acme/tiny", "config.json", revision="v1", cache_dir=cache_dir)
  assert path.endswith(os.path.join(old, "config.json"))


def test_allow_patterns_select_what_must_be_present(cache):
  cache_dir, _, _ = cache
  # The repo lists pytorch_model.bin, which was never downloaded: a full
  # snapshot is incomplete offline, a filtered one is complete.
  with pytest.raises(IncompleteSnapshotError, match="pytorch_model.bin"):
    hub.download("acme/tiny", cache_dir=cache_dir)
  folder = hub.download("acme/tiny", cache_dir=cache_dir, allow_patterns=["*.json", "*.md"])
  assert os.path.isfile(os.path.join(folder, "README.md"))


def test_missing_repo_or_file_names_it(cache):
  cache_dir, _, _ = cache
  with pytest.raises(LocalEntryNotFoundError,
                     match=r"model repo 'acme/absent' at revision main is not in the Hub "
                           r"cache .*HF_HUB_OFFLINE is set"):
    hub.download("acme/absent", cache_dir=cache_dir)
  with pytest.raises(LocalEntryNotFoundError, match=r"model.safetensors of model repo 'acme/tiny'"):
    hub.download_file("acme/tiny", "model.safetensors", cache_dir=cache_dir)


def test_default_cache_is_the_standard_one(tmp_path):
  weights = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
  io.save_safetensors(str(tmp_path / "model.safetensors"), weights)
  fake_hub.add_to_cache(os.environ["HF_HUB_CACHE"], "acme/default-cache",
                        {"model.safetensors": (tmp_path / "model.safetensors").read_bytes()})
  folder = hub.download("acme/default-cache")
  assert folder.startswith(os.path.realpath(os.environ["HF_HUB_CACHE"]))
  kernel = io.load_torch(folder)["params"]["fc"]["kernel"]  # downloaded -> flax layout
  np.testing.assert_array_equal(kernel, weights["fc.weight"].T)


def test_read_card(cache):
  cache_dir, _, _ = cache
  meta = hub.read_card("acme/tiny", cache_dir=cache_dir)
  assert meta.base_models == ("acme/base",)
  assert (meta.base_model_relation, meta.license, meta.pipeline_tag) == (
      "finetune", "apache-2.0", "image-classification")
  assert meta.datasets == ("acme/digits",) and meta.tags == ("vision",)
  assert meta.raw["base_model"] == "acme/base"
  with pytest.raises(LocalEntryNotFoundError,
                     match="README.md of model repo 'acme/tiny' at revision v1"):
    hub.read_card("acme/tiny", revision="v1", cache_dir=cache_dir)


def test_card_variants():
  merge = parse_card("---\nbase_model:\n- a/x\n- b/y\nbase_model_relation: merge\n"
                     "datasets: one/set\n---\n")
  assert merge.base_models == ("a/x", "b/y") and merge.base_model_relation == "merge"
  assert merge.datasets == ("one/set",) and merge.license is None
  assert parse_card("# no metadata\n") == parse_card("")
  assert parse_card("# no metadata\n").base_models == ()
  with pytest.raises(ValueError, match=r"org/m/README.md: base_model must be a string or a list"):
    parse_card("---\nbase_model: {a: 1}\n---\n", where="org/m/README.md")
  with pytest.raises(ValueError, match=r"README.md: invalid card metadata"):
    parse_card("---\nbase_model: [a\n---\n")
