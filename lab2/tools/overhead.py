"""What a run costs besides its training: the fixed cost of the run path, measured.

A sweep's run is a papermill execution of book/run.ipynb in a child process with a kernel
of its own (lab2.runs.executors.execute_run). Before and after the fit it pays for the
processes, the imports (torch, papermill, pandas, the plotting stack), loading the data,
the figure and writing the record. `measure(...)` executes smoke-size runs exactly as a
sweep does, one at a time and single-threaded, into a temporary folder, and takes the
run's wall time minus the training time its summary records (lab2.core.train.fit's `seconds`).
"""

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab2.core.summary import OK
from lab2.runs import record
from lab2.runs.executors import RunTask, execute_run, notebook_parameters, start_fork_server
from lab2.runs.grid import baseline_config

PROFILE = "smoke"  # the smallest runs the project makes: the fixed cost is most of them


@dataclass
class RunCost:
    model: str
    wall_s: float  # from starting the run's process to its published folder
    fit_s: float  # training and evaluation, as the run recorded it

    @property
    def fixed_s(self) -> float:
        return self.wall_s - self.fit_s


def measure(models=("mlp",), repeats: int = 5, data_dir=None, progress=print) -> list[RunCost]:
    """Execute `repeats` smoke runs of each model as a sweep does; their wall and fit seconds."""
    from lab2.core.data import default_data_dir, locate

    data_path = str(locate(data_dir if data_dir is not None else default_data_dir())[1].resolve())
    started = time.perf_counter()
    start_fork_server()
    progress(f"fork server started in {time.perf_counter() - started:.2f} s (once per sweep: "
             "the imports every run shares)")
    costs = []
    with tempfile.TemporaryDirectory(prefix="lab2-overhead-") as folder:
        for model in models:
            config = baseline_config(model, PROFILE)
            for repeat in range(repeats):
                # Not a run id: each repeat is a folder of its own, and no record claims to hold a run of the data.
                run_dir = Path(folder) / f"{model}-repeat-{repeat}"
                task = RunTask(run_dir.name, notebook_parameters(config, "cpu", data_path), str(run_dir), threads=1)
                started = time.perf_counter()
                outcome = execute_run(task)
                wall = time.perf_counter() - started
                if outcome["status"] != OK:
                    raise RuntimeError(f"the {model} run failed: {outcome['error']}")
                cost = RunCost(model, wall, record.read_run(run_dir).summary["seconds"])
                progress(f"{model} run {repeat + 1}/{repeats}: {cost.wall_s:.2f} s, of which fit "
                         f"{cost.fit_s:.2f} s, fixed {cost.fixed_s:.2f} s")
                costs.append(cost)
    return costs


def format_costs(costs: list[RunCost]) -> str:
    lines = [f"{'model':<6} {'runs':>4} {'wall s':>7} {'fit s':>6} {'fixed s':>8}   (medians)"]
    for model in dict.fromkeys(cost.model for cost in costs):
        chosen = [cost for cost in costs if cost.model == model]
        lines.append(f"{model:<6} {len(chosen):>4} {statistics.median(c.wall_s for c in chosen):>7.2f} "
                     f"{statistics.median(c.fit_s for c in chosen):>6.2f} "
                     f"{statistics.median(c.fixed_s for c in chosen):>8.2f}")
    return "\n".join(lines)
