"""The run layer: train, evaluate and sample, each from a run directory.

- `rundir`: the run directory's files and rules (config, data record,
  versions, lock, checkpoints).
- `factory`: config -> data source, model and bound specification.
- `training`: `train`, one small loop with hooks.
- `warmstart`: `--init-from`, a new run's model from another run's.
- `best`: the best validation's checkpoint and history (RUN_DIR/best).
- `evaluation`: the public `Evaluator`, `RunEvaluation` and `evaluate`.
- `records`: evaluation records (RUN_DIR/eval) and their statistics.
- `compare`: `compare.compare`, runs x bounds x N as a table and a figure.
- `sampling`: `sample`, written through `seqlvm.render`.

Recommended import: `from seqlvm import run` then `run.train(config,
run_dir)`, `run.evaluate(run_dir)`, `run.sample(run_dir)`.
"""

from seqlvm import lazy

__all__ = ["train", "evaluate", "sample", "TrainResult",
           "Evaluator", "make_dataset_and_model", "build_model", "rundir",
           "factory", "training", "evaluation", "sampling", "best",
           "records", "compare", "warmstart"]

_LAZY = {
    "train": "seqlvm.run.training",
    "TrainResult": "seqlvm.run.training",
    "evaluate": "seqlvm.run.evaluation",
    "Evaluator": "seqlvm.run.evaluation",
    "sample": "seqlvm.run.sampling",
    "make_dataset_and_model": "seqlvm.run.factory",
    "build_model": "seqlvm.run.factory",
}
_SUBMODULES = ("rundir", "factory", "training", "evaluation", "sampling",
               "best", "records", "compare", "warmstart")


__getattr__, __dir__ = lazy.attach(__name__, _LAZY, _SUBMODULES)
