"""Hub card metadata: parse a README's YAML front matter; write a zoo's card.

The atlas reads lineage from `base_model` (one repo id, or a list for merges)
and `base_model_relation` (finetune, adapter, quantized, merge); the Hub
infers a missing relation, this module does not.

Usage:
  meta = parse_card(open("README.md").read())
  meta.base_models, meta.base_model_relation, meta.license
  card = zoo_card(manifest, "org/digits-zoo")     # a huggingface_hub.DatasetCard
"""
import dataclasses

from huggingface_hub import DatasetCard, DatasetCardData, RepoCard


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


# As DatasetCard.from_template fills it, with str.format in place of Jinja2
# (which is not a jatlas dependency).
ZOO_CARD_TEMPLATE = """---
{card_data}
---

# {name}

A jatlas model zoo: {members} `{model}` members ({model_kwargs}) trained on
`{data}` ({data_kwargs}), tasks {tasks}.

Files: `zoo.json` (manifest), `members.parquet` (one row per member and
checkpoint), `params-eNNNN.safetensors` (stacked member tensors). Readable
with safetensors + pandas alone, or:

```python
from jatlas.io import hub
zoo = hub.open_zoo({repo_id!r})
```
"""


def zoo_card(manifest: dict, repo_id: str) -> DatasetCard:
  """The dataset card of a zoo pushed as `repo_id`, from its zoo.json manifest."""
  model, data = manifest["model"], manifest["data"]
  name = manifest.get("name", "zoo")
  card_data = DatasetCardData(pretty_name=name, library_name="jatlas",
                              tags=["jatlas", "model-zoo", model["name"]])
  return DatasetCard(ZOO_CARD_TEMPLATE.format(
      card_data=card_data.to_yaml(), name=name, members=manifest["members"],
      model=model["name"], model_kwargs=model["kwargs"], data=data["name"],
      data_kwargs=data["kwargs"], tasks=manifest["tasks"], repo_id=repo_id))
