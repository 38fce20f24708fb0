"""From a config (`jatlas.zoo.schema`) to the pieces of a zoo run: dataset, tasks, net, population.

Usage:
  ds = build_dataset(cfg); tasks = build_tasks(cfg, ds); net = build_model(cfg, tasks)
  spec = build_population(cfg, tasks, num_parents=0)
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
  return data.load(cfg.data.name, **dict(cfg.data.kwargs))


def build_tasks(cfg, ds: data.Dataset) -> data.TaskSet:
  tasks = TASK_BUILDERS[cfg.tasks.kind](ds, **dict(cfg.tasks.kwargs))
  if cfg.tasks.label_noise:
    tasks = data.with_label_noise(tasks, tuple(cfg.tasks.label_noise), seed=cfg.tasks.noise_seed)
  return tasks


def model_kwargs(cfg, tasks: data.TaskSet) -> dict:
  """What `nets.build` needs to rebuild the net (stored in the zoo manifest)."""
  return {"num_classes": tasks.num_classes, **dict(cfg.model.kwargs)}


def build_model(cfg, tasks: data.TaskSet):
  return nets.build(cfg.model.name, **model_kwargs(cfg, tasks))


def build_population(cfg, tasks: data.TaskSet, num_parents: int = 0) -> PopulationSpec:
  z = cfg.zoo
  return population_spec(
      tasks=tasks.names, members=z.members, seed=z.seed, lr=tuple(z.lr),
      weight_decay=tuple(z.weight_decay), optimizer=tuple(z.optimizer),
      init_scale=tuple(z.init_scale), epochs=tuple(z.epochs), num_parents=num_parents)
