"""A chapter's section: ours beside the original, missing runs said once, sentences only on data."""

import pandas as pd

from lab2.core.summary import DIVERGED, OK
from lab2.report.experiments import BASELINE, BATCH_SIZE_GRID, NARROW_DROPOUT_RATE_GRID
from lab2.report.results import METRICS
from lab2.report import evidence
from lab2.report.sections import Section, status
from lab2.runs import record

REFERENCE = pd.DataFrame([
    {"model": "mlp", "experiment": "grid_batch_size", "role": BATCH_SIZE_GRID.label, "dropout_rate": 0.5,
     "batch_size": size, "learning_rate": 0.001, "batchnorm": True, "dropout_kind": None, "metric": metric,
     "value": value, "note": None}
    for size, metric, value in ((50, "test_acc", 0.551), (100, "test_acc", 0.555), (50, "train_loss", 0.468))
])


def grid_runs(finished: dict[int, list[float]], planned_sizes=(50, 100, 200), seeds=3) -> pd.DataFrame:
    """The MLP's batch-size grid: `finished` maps a batch size to the test accuracies of its finished seeds."""
    rows = []
    for size in planned_sizes:
        accuracies = finished.get(size, [])
        for seed in range(seeds):
            done = seed < len(accuracies)
            rows.append({
                "run_id": f"mlp-{size}-{seed}", "experiments": ["mlp/grid_batch_size"], "roles": [BATCH_SIZE_GRID.label],
                "model": "mlp", "dropout_rate": 0.5, "batch_size": size, "learning_rate": 0.001, "batchnorm": True,
                "dropout_kind": "2d", "channels": 256, "hidden": 1024, "train_size": None, "eval_size": None,
                "jpeg_quality": None, "pixel_noise": 0.0, "batchnorm_variant": "standard", "precision": "tf32",
                "num_epochs": 50, "seed": seed,
                "status": OK if done else record.MISSING, "device": "cuda" if done else None,
                "device_name": "NVIDIA H200" if done else None,
                "used_precision": "tf32" if done else None, "seconds": 60.0 if done else None,
                **{metric: (0.7 if done else None) for metric in METRICS},
                "test_acc": accuracies[seed] if done else None,
            })
    return pd.DataFrame(rows)


def section(runs: pd.DataFrame, role=BATCH_SIZE_GRID) -> Section:
    return Section(evidence.build(runs, REFERENCE), runs, "mlp", role)


def table_of(runs: pd.DataFrame) -> pd.DataFrame:
    return section(runs).table().table


def test_the_table_puts_the_original_beside_ours_with_the_judged_difference():
    shown = table_of(grid_runs({50: [0.560, 0.562, 0.564], 100: [0.55, 0.56, 0.57], 200: [0.56]}))
    assert list(shown.columns) == ["batch size 50", "batch size 100", "batch size 200"]
    assert shown.loc[("", "seeds"), "batch size 50"] == "3"
    assert shown.loc[("test_acc", "ours"), "batch size 50"] == "0.562 ± 0.002"
    assert shown.loc[("test_acc", "original"), "batch size 50"] == "0.551"
    # 0.011 above one run of the report, whose noise is taken as one of our seeds': beyond noise, clear.
    assert shown.loc[("test_acc", "difference"), "batch size 50"] == "+0.011 (clear, beyond noise)"
    assert shown.loc[("test_acc", "difference"), "batch size 100"] == "+0.005 (small, within noise)"
    assert shown.loc[("test_acc", "difference"), "batch size 200"] == "–"  # the report printed no such number
    assert shown.loc[("train_loss", "difference"), "batch size 50"] == "+0.232 (large, beyond noise)"
    assert not shown.isna().any().any()


def test_a_partly_run_section_names_what_did_not_run_and_keeps_its_sentences():
    partial = section(grid_runs({50: [0.56, 0.56, 0.57]}))
    assert not partial.complete and not partial.empty
    assert list(partial.table().table.columns) == ["batch size 50"]
    line = partial.missing_line().data
    # What is missing, here; what making it takes, once in the book (the introduction's status), linked.
    assert line == "Not run yet: batch size 100; batch size 200 (6 runs); {ref}`what making them takes <status>`."
    said = status(partial.runs, "mlp", "full")
    assert said.startswith("**The MLP**: 6 runs of 9 have not run (2 settings; seeds 0, 1 and 2). ")
    assert "`make sweep PROFILE=full ARGS=\"--only 'mlp/*'\"` makes them" in said
    some_seeds = section(grid_runs({50: [0.56, 0.56, 0.57], 100: [0.55], 200: [0.56, 0.57]})).missing_line().data
    assert some_seeds.startswith("Not run yet: seeds 1 and 2 of batch size 100; seed 2 of batch size 200 (3 runs)")
    assert partial.says("best is {best}", best=50) is None
    complete = section(grid_runs({50: [0.56], 100: [0.55], 200: [0.57]}))
    assert complete.complete and complete.says("best is {best}", best=200).data == "best is 200"


def test_a_section_without_runs_shows_one_notice_and_no_table():
    runs = grid_runs({})
    empty = section(runs)
    assert empty.empty and not empty.comparable
    notice = empty.table().data
    assert notice.startswith("**Not run yet.** No run of the MLP's batch size grid has finished (9 runs planned over "
                             "3 settings: batch size 50; batch size 100; batch size 200): {ref}`what making them takes <status>`.")
    # Another role with no planned run at all has nothing to show either way.
    assert section(runs, NARROW_DROPOUT_RATE_GRID).planned.empty


def test_seeds_from_different_devices_are_marked_where_they_are_averaged():
    runs = grid_runs({50: [0.56, 0.56, 0.57], 100: [0.55], 200: [0.56]})
    runs.loc[runs["run_id"] == "mlp-50-2", ["device", "device_name", "used_precision"]] = ["cpu", "cpu", "fp32"]
    shown = table_of(runs)
    assert shown.loc[("", "seeds"), "batch size 50"] == "3 (2 on NVIDIA H200 tf32, 1 on cpu fp32: mixed)"
    assert shown.loc[("", "seeds"), "batch size 100"] == "1"


def test_diverged_runs_show_as_diverged_with_their_epoch_never_as_missing():
    runs = grid_runs({50: [0.56, 0.56, 0.57], 100: [0.55, 0.56], 200: [0.1]})
    # Seed 2 of batch size 100 and the one run of batch size 200 diverged (lab2.core.train.divergence).
    for size, seed, epoch in ((100, 2, 4), (200, 0, 2)):
        row = (runs["batch_size"] == size) & (runs["seed"] == seed)
        runs.loc[row, ["status", "diverged_epoch", "test_acc"]] = [DIVERGED, epoch, 0.1]
    shown = table_of(runs)
    assert list(shown.columns) == ["batch size 50", "batch size 100", "batch size 200"]
    assert shown.loc[("", "seeds"), "batch size 100"] == "2; seed 2 diverged at epoch 4, not counted"
    assert shown.loc[("test_acc", "ours"), "batch size 100"] == "0.555 ± 0.007"  # the diverged seed left out
    assert shown.loc[("", "seeds"), "batch size 200"] == "0; seed 0 diverged at epoch 2, not counted"
    assert {shown.loc[(metric, "ours"), "batch size 200"] for metric in METRICS} == {DIVERGED}
    partial = section(runs)
    # A diverged seed has ended: only the seeds that never ran are missing.
    assert partial.missing_line().data.startswith("Not run yet: seeds 1 and 2 of batch size 200 (2 runs)")
    assert not partial.complete  # but batch size 200 has no number, so the section's sentences wait


def test_a_model_without_runs_is_costed_from_the_other_models_cpu_runs_and_sent_to_a_gpu_when_long():
    mlp = grid_runs({size: [0.56, 0.56, 0.57] for size in (50, 100, 200)})
    cnn = mlp.iloc[:3].assign(model="cnn", run_id=lambda runs: "cnn-" + runs["run_id"], experiments=[["cnn/best"]] * 3,
                              roles=[[BASELINE.label]] * 3, status=record.MISSING, device=None, device_name=None,
                              used_precision=None, seconds=None)

    def said(device: str, seconds: float) -> str:
        made = mlp.assign(device=device, device_name="cpu" if device == "cpu" else "NVIDIA H200", seconds=seconds)
        return status(pd.concat([made, cnn], ignore_index=True), "cnn", "full")

    # 10 minutes an MLP run on the CPU, scaled by the two models' multiply-adds: hours, so a GPU machine's work.
    long = said("cpu", 600.0)
    assert "hours on this project's CPU (estimated from its MLP runs there and the two models' multiply-adds)" in long
    assert long.endswith("makes them on a GPU machine (`make gpu-check` there packs them as they finish).")
    # Under an hour: the CPU sweeps them in the background.
    assert said("cpu", 60.0).endswith("`make sweep PROFILE=full ARGS=\"--only 'cnn/*'\"` makes them.")
    # No run of either model on a CPU: no estimate, and no device advised.
    gpu_only = said("cuda", 600.0)
    assert "estimated" not in gpu_only and "GPU" not in gpu_only
