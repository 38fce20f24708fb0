"""Strict key/shape checking: every problem of a state dict in one error.

Usage:
  check_keys(shapes(converted.tensors), shapes(flat_schema), what="ckpt.safetensors",
             sources=converted.sources, unmatched=converted.unmatched)
  check_keys(shapes(converted.tensors), what="ckpt", unmatched=converted.unmatched)
"""
from typing import Iterable, Mapping

import numpy as np


class StateDictMismatchError(ValueError):
  """Missing, unexpected or mis-shaped keys, all listed in one message.

  Attributes hold the lists: `missing` [(name, expected_shape)], `unexpected`
  [name], `mismatched` [(name, expected_shape, found_shape)].
  """

  def __init__(self, message, missing, unexpected, mismatched):
    super().__init__(message)
    self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched


def shapes(tensors: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
  """{name: shape} of arrays, jax.ShapeDtypeStructs or anything with .shape."""
  return {k: tuple(int(d) for d in np.shape(v)) for k, v in tensors.items()}


def _named(name: str, sources: Mapping[str, str]) -> str:
  source = sources.get(name)
  return name if source is None or source == name else f"{name} (from {source})"


def check_keys(found: Mapping[str, tuple], expected: Mapping[str, tuple] | None = None, *,
               what: str, sources: Mapping[str, str] | None = None,
               unmatched: Iterable[str] = (), allow_missing: bool = False,
               allow_unexpected: bool = False) -> None:
  """Raises StateDictMismatchError listing every problem found in `what`.

  `found`/`expected`: {name: shape}; expected None means no schema, so only
  `unmatched` (source names no rule converted) can be unexpected. `sources`
  maps a converted name to its source name, for the message.
  """
  expected = found if expected is None else expected
  sources = sources or {}
  missing = [] if allow_missing else [
      (k, expected[k]) for k in sorted(expected) if k not in found]
  unexpected = [] if allow_unexpected else [
      *(f"{k} (no rule matches)" for k in unmatched),
      *(_named(k, sources) for k in sorted(found) if k not in expected)]
  mismatched = [(_named(k, sources), expected[k], found[k])
                for k in sorted(found) if k in expected and found[k] != expected[k]]
  if not (missing or unexpected or mismatched):
    return
  lines = [f"{what}: {len(missing)} missing, {len(unexpected)} unexpected, "
           f"{len(mismatched)} mis-shaped key(s)"]
  lines += [f"  missing:    {k} expected shape {s}" for k, s in missing]
  lines += [f"  unexpected: {k}" for k in unexpected]
  lines += [f"  mis-shaped: {k}: expected {e}, found {f}" for k, e, f in mismatched]
  raise StateDictMismatchError("\n".join(lines), missing, unexpected, mismatched)
