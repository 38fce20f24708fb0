"""jatlas.stages: finished stages are recorded at once, reused by a rerun, and a rerun
under another config or other inputs is refused."""
import json
import os

import ml_collections
import pytest

from jatlas.stages import FILE, StageMismatchError, Stages


def _cfg(**kw):
  return ml_collections.ConfigDict({"experiment": {"seed": 0, "sizes": (3, 10), **kw}})


def test_a_rerun_reads_finished_stages_without_running_them(tmp_path):
  calls = []
  first = Stages(str(tmp_path), _cfg(), inputs={"zoo.json": "abc"}, verbose=False)
  value = first.run("fit/a", lambda: calls.append("a") or {"acc": 0.25, "layers": (1, 2)})
  assert value == {"acc": 0.25, "layers": [1, 2]}  # as a resumed run reads it back
  with open(tmp_path / FILE) as f:
    assert json.load(f)["stages"] == {"fit/a": value}  # written when the stage ended
  again = Stages(str(tmp_path), _cfg(), inputs={"zoo.json": "abc"}, verbose=False)
  assert again.run("fit/a", lambda: pytest.fail("a finished stage ran again")) == value
  assert again.run("fit/b", lambda: calls.append("b") or 0.5) == 0.5
  assert calls == ["a", "b"]
  assert os.listdir(tmp_path) == [FILE]  # no temporary file left behind


def test_another_config_or_other_inputs_are_refused(tmp_path):
  Stages(str(tmp_path), _cfg(), inputs={"zoo.json": "abc"}).run("fit/a", lambda: 1.0)
  with pytest.raises(StageMismatchError, match=r"experiment.seed: 0 in .*, 1 now") as e:
    Stages(str(tmp_path), _cfg(seed=1), inputs={"zoo.json": "abc"})
  assert "remove" in str(e.value) and "another --out" in str(e.value)
  with pytest.raises(StageMismatchError, match=r"zoo.json: 'abc' in .*, 'xyz' now"):
    Stages(str(tmp_path), _cfg(), inputs={"zoo.json": "xyz"})


def test_a_result_that_is_not_json_is_an_error_and_not_recorded(tmp_path):
  stages = Stages(str(tmp_path), _cfg(), verbose=False)
  with pytest.raises(TypeError, match="must be JSON"):
    stages.run("fit/a", lambda: object())
  assert not os.path.exists(tmp_path / FILE)
