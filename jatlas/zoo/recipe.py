"""From a config to the pieces of a zoo run: dataset, tasks, net, population.

Config fields (see configs/hypernet_digits.py):
  data.name, data.kwargs            -> jatlas.data.load
  tasks.kind, tasks.kwargs, tasks.label_noise, tasks.noise_seed
  model.name, model.kwargs          -> jatlas.nets.build (num_classes from tasks)
  zoo.members, zoo.seed, zoo.lr, zoo.weight_decay, zoo.optimizer, zoo.init_scale, zoo.epochs
"""
from jatlas import data, nets
from jatlas.zoo.population import PopulationSpec, population_spec

TASK_BUILDERS = {
    "multiclass": data.multiclass,
    "one_vs_rest": data.one_vs_rest,
    "class_subsets": data.class_subsets,
    "class_pairs": data.class_pairs,
}


def build_dataset(cfg) -> data.Dataset:
  return data.load(cfg.data.name, **dict(cfg.data.get("kwargs", {})))


def build_tasks(cfg, ds: data.Dataset) -> data.TaskSet:
  kind = cfg.tasks.kind
  if kind not in TASK_BUILDERS:
    raise ValueError(f"config tasks.kind={kind!r}; expected one of {sorted(TASK_BUILDERS)}")
  tasks = TASK_BUILDERS[kind](ds, **dict(cfg.tasks.get("kwargs", {})))
  if cfg.tasks.get("label_noise"):
    tasks = data.with_label_noise(tasks, tuple(cfg.tasks.label_noise),
                                  seed=cfg.tasks.get("noise_seed", 0))
  return tasks


def build_model(cfg, tasks: data.TaskSet):
  return nets.build(cfg.model.name, num_classes=tasks.num_classes,
                    **dict(cfg.model.get("kwargs", {})))


def model_kwargs(cfg, tasks: data.TaskSet) -> dict:
  """What `nets.build` needs to rebuild the net (stored in the zoo manifest)."""
  return {"num_classes": tasks.num_classes, **dict(cfg.model.get("kwargs", {}))}


def build_population(cfg, tasks: data.TaskSet, num_parents: int = 0) -> PopulationSpec:
  z = cfg.zoo
  return population_spec(
      tasks=tasks.names, members=z.members, seed=z.seed, lr=tuple(z.lr),
      weight_decay=tuple(z.weight_decay), optimizer=tuple(z.optimizer),
      init_scale=tuple(z.init_scale), epochs=tuple(z.epochs), num_parents=num_parents)
