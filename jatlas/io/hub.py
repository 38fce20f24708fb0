"""Hugging Face Hub: downloads through the standard cache, card metadata, zoos.

Every download goes through huggingface_hub's cache ($HF_HUB_CACHE, or
`cache_dir`), so with HF_HUB_OFFLINE=1 (read once, when huggingface_hub is
first imported) files come from the cache alone and nothing touches the
network. A zoo is published as a dataset repo holding the zoo directory's
files plus a generated card.

Usage:
  folder = download("org/model", allow_patterns=["*.safetensors", "*.json"])
  meta = read_card("org/model")            # base_models, license, ...
  push_zoo("runs/digits", "org/digits-zoo")
  zoo = open_zoo("org/digits-zoo")         # the way to open a Hub zoo (-> jatlas.zoo.Zoo)
"""
import os

import huggingface_hub as hf
from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

from jatlas.io.card import CardMetadata, parse_card, zoo_card
from jatlas.zoo import store

CARD = "README.md"
ZOO_CONFIG = "config.json"  # the training config, beside the manifest
ZOO_PATTERNS = (store.MANIFEST, store.TABLE, ZOO_CONFIG, "params-e*.safetensors", CARD)

__all__ = ["download", "download_file", "read_card", "push_zoo", "open_zoo", "CardMetadata"]


def _not_cached(repo_id, what, repo_type, revision, cache_dir, error) -> LocalEntryNotFoundError:
  offline = " (HF_HUB_OFFLINE is set)" if hf.constants.HF_HUB_OFFLINE else ""
  return LocalEntryNotFoundError(
      f"{what} of {repo_type} repo {repo_id!r} at revision {revision or 'main'} "
      f"is not in the Hub cache {cache_dir or hf.constants.HF_HUB_CACHE} and "
      f"cannot be downloaded{offline}: {error}")


def download(repo_id: str, *, revision: str | None = None,
             allow_patterns: list[str] | str | None = None,
             ignore_patterns: list[str] | str | None = None,
             repo_type: str = "model", cache_dir: str | None = None,
             token: str | None = None) -> str:
  """The local snapshot folder of a repo (only files matching the patterns).

  `revision` is a branch, tag or commit hash (default: main).
  """
  try:
    return hf.snapshot_download(
        repo_id, repo_type=repo_type, revision=revision, cache_dir=cache_dir,
        allow_patterns=allow_patterns, ignore_patterns=ignore_patterns, token=token)
  except IncompleteSnapshotError:
    raise  # its message already lists the missing files
  except LocalEntryNotFoundError as e:
    raise _not_cached(repo_id, "a snapshot", repo_type, revision, cache_dir, e) from e


def download_file(repo_id: str, filename: str, *, revision: str | None = None,
                  repo_type: str = "model", cache_dir: str | None = None,
                  token: str | None = None) -> str:
  """The local path of one file of a repo."""
  try:
    return hf.hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision,
                              cache_dir=cache_dir, token=token)
  except LocalEntryNotFoundError as e:
    raise _not_cached(repo_id, filename, repo_type, revision, cache_dir, e) from e


def read_card(repo_id: str, *, revision: str | None = None, repo_type: str = "model",
              cache_dir: str | None = None, token: str | None = None) -> CardMetadata:
  """Metadata (base_model, base_model_relation, license, ...) of a repo's card."""
  path = download_file(repo_id, CARD, revision=revision, repo_type=repo_type,
                       cache_dir=cache_dir, token=token)
  with open(path, encoding="utf-8") as f:
    return parse_card(f.read(), where=f"{repo_id}@{revision or 'main'}/{CARD}")


def _zoo_files(zoo: store.Zoo) -> list[str]:
  """The files that make up the zoo; leaves out anything else in its folder."""
  files = [store.MANIFEST, store.TABLE, *(s["file"] for s in zoo.manifest["shards"])]
  return files + [f for f in (ZOO_CONFIG, CARD) if os.path.isfile(os.path.join(zoo.dir, f))]


def push_zoo(zoo_dir: str, repo_id: str, *, api: hf.HfApi | None = None,
             private: bool | None = None, commit_message: str | None = None,
             token: str | None = None):
  """Publishes a zoo directory as dataset repo `repo_id` in one commit.

  The zoo is opened (and checked) first, so a damaged zoo is never pushed. A
  dataset card is generated unless the folder has its own README.md. `api`:
  an `HfApi` (or a stand-in with `create_repo` and `create_commit`). Returns
  what `create_commit` returns (a CommitInfo with the commit's URL).
  """
  zoo = store.Zoo.open(zoo_dir)
  api = api or hf.HfApi(token=token)
  ops = [hf.CommitOperationAdd(path_in_repo=f, path_or_fileobj=os.path.join(zoo.dir, f))
         for f in _zoo_files(zoo)]
  if not os.path.isfile(os.path.join(zoo.dir, CARD)):
    card = str(zoo_card(zoo.manifest, repo_id)).encode()
    ops.append(hf.CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card))
  api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
  return api.create_commit(
      repo_id, ops, repo_type="dataset",
      commit_message=commit_message or f"Upload jatlas zoo ({zoo.num_members} members, "
                                        f"{zoo.num_checkpoints} checkpoints)")


def open_zoo(repo_id: str, *, revision: str | None = None, cache_dir: str | None = None,
             token: str | None = None, check: bool = True, verify: bool = False) -> store.Zoo:
  """Downloads (or finds in the cache) a zoo dataset repo and opens it.

  check, verify: as in Zoo.open (headers against the manifest; shard checksums).
  """
  folder = download(repo_id, revision=revision, repo_type="dataset",
                    allow_patterns=list(ZOO_PATTERNS), cache_dir=cache_dir, token=token)
  return store.Zoo.open(folder, check=check, verify=verify)
