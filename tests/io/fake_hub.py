"""A local stand-in for the Hub (test helper): fake cache entries, fake uploads.

The cache layout is huggingface_hub's: `<type>s--<org>--<name>/refs/<ref>`
holds a 40-hex commit id, `snapshots/<commit>/<path>` the files (plain files
work; no blobs/ symlinks needed), and optionally `trees/<commit>.json` the
repo's file listing.
"""
import hashlib
import json
import os
import types


def repo_folder(cache_dir: str, repo_id: str, repo_type: str = "model") -> str:
  return os.path.join(cache_dir, f"{repo_type}s--{repo_id.replace('/', '--')}")


def add_to_cache(cache_dir: str, repo_id: str, files: dict, *, repo_type: str = "model",
                 refs=("main",), listed=()) -> str:
  """Caches one commit holding `files` {path: bytes or str}; returns its id.

  `refs` (branches, tags) point at the commit. `listed` are repo paths that
  the commit's tree listing has but the cache lacks (not downloaded yet).
  """
  blobs = {p: c.encode() if isinstance(c, str) else c for p, c in files.items()}
  commit = hashlib.sha1(repr(sorted(blobs.items())).encode()).hexdigest()
  folder = repo_folder(cache_dir, repo_id, repo_type)
  for path, blob in blobs.items():
    target = os.path.join(folder, "snapshots", commit, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
      f.write(blob)
  os.makedirs(os.path.join(folder, "refs"), exist_ok=True)
  for ref in refs:
    with open(os.path.join(folder, "refs", ref), "w") as f:
      f.write(commit)
  if listed:
    tree = {p: {"size": len(b), "blob_id": hashlib.sha1(b).hexdigest()}
            for p, b in blobs.items()}
    tree |= {p: {"size": 1, "blob_id": hashlib.sha1(p.encode()).hexdigest()} for p in listed}
    os.makedirs(os.path.join(folder, "trees"), exist_ok=True)
    with open(os.path.join(folder, "trees", f"{commit}.json"), "w") as f:
      json.dump({"format_version": 1, "files": tree}, f)
  return commit


class FakeHubApi:
  """Has HfApi's `create_repo` and `create_commit`; a commit lands in a local
  cache as if it had been pushed and then downloaded. Calls are recorded."""

  def __init__(self, cache_dir: str):
    self.cache_dir, self.calls, self.repos = cache_dir, [], set()

  def create_repo(self, repo_id, **kwargs):
    self.calls.append(("create_repo", (repo_id,), kwargs))
    self.repos.add((repo_id, kwargs.get("repo_type") or "model"))
    return f"local://{repo_id}"

  def create_commit(self, repo_id, operations, **kwargs):
    self.calls.append(("create_commit", (repo_id, operations), kwargs))
    repo_type = kwargs.get("repo_type") or "model"
    if (repo_id, repo_type) not in self.repos:
      raise RuntimeError(f"{repo_type} repo {repo_id} was not created")
    files = {}
    for op in operations:
      with op.as_file() as f:
        files[op.path_in_repo] = f.read()
    commit = add_to_cache(self.cache_dir, repo_id, files, repo_type=repo_type)
    return types.SimpleNamespace(oid=commit, commit_url=f"local://{repo_id}/commit/{commit}")
