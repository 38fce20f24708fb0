"""Hub card metadata: parse a README's YAML front matter; write a zoo's card.

The atlas reads lineage from `base_model` (one repo id, or a list for merges)
and `base_model_relation` (finetune, adapter, quantized, merge); the Hub
infers a missing relation, this module does not.

Usage:
  meta = parse_card(open("README.md").read())
  meta.base_models, meta.base_model_relation, meta.license
"""
import dataclasses

from huggingface_hub import DatasetCardData, RepoCard


@dataclasses.dataclass(frozen=True)
class CardMetadata:
  """The fields the atlas uses; `raw` holds the whole front matter."""
  base_models: tuple[str, ...] = ()
  base_model_relation: str | None = None
  license: str | None = None
  pipeline_tag: str | None = None
  datasets: tuple[str, ...] = ()
  library_name: str | None = None
  tags: tuple[str, ...] = ()
  raw: dict = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}


def _strings(value, where: str, key: str) -> tuple[str, ...]:
  """A str or list of str as a tuple; YAML `null` as ()."""
  if value is None:
    return ()
  values = [value] if isinstance(value, str) else value
  if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
    raise ValueError(f"{where}: {key} must be a string or a list of strings, "
                     f"got {value!r}")
  return tuple(values)


def parse_card(text: str, *, where: str = "README.md") -> CardMetadata:
  """Metadata of a model or dataset card (empty if it has no front matter)."""
  try:
    raw = RepoCard(text, ignore_metadata_errors=False).data.to_dict()
  except Exception as e:  # the YAML parser's own errors, or ValueError
    raise ValueError(f"{where}: invalid card metadata: {e}") from e
  return CardMetadata(
      base_models=_strings(raw.get("base_model"), where, "base_model"),
      base_model_relation=raw.get("base_model_relation"),
      license=raw.get("license"),
      pipeline_tag=raw.get("pipeline_tag"),
      datasets=_strings(raw.get("datasets"), where, "datasets"),
      library_name=raw.get("library_name"),
      tags=_strings(raw.get("tags"), where, "tags"),
      raw=raw)


def zoo_card(manifest: dict, repo_id: str) -> str:
  """A dataset card for a zoo pushed as `repo_id`, from its zoo.json manifest."""
  model, data = manifest["model"], manifest["data"]
  yaml = DatasetCardData(
      pretty_name=manifest.get("name", "zoo"), library_name="jatlas",
      tags=["jatlas", "model-zoo", model["name"]]).to_yaml()
  return (f"---\n{yaml}\n---\n\n# {manifest.get('name', 'zoo')}\n\n"
          f"A jatlas model zoo: {manifest['members']} `{model['name']}` members "
          f"({model['kwargs']}) trained on `{data['name']}` ({data['kwargs']}), "
          f"tasks {manifest['tasks']}.\n\n"
          "Files: `zoo.json` (manifest), `members.parquet` (one row per member "
          "and checkpoint), `params-eNNNN.safetensors` (stacked member tensors). "
          "Readable with safetensors + pandas alone, or:\n\n"
          f"```python\nfrom jatlas.zoo import Zoo\nzoo = Zoo.from_hub({repo_id!r})\n```\n")
