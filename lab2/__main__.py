"""Command line: `python -m lab2 train | sweep | bench | book | code-check | gpu-check | unpack-results`."""

import os
import signal
import sys

INTERRUPTED_EXIT = 130  # a shell's code for a command ended by Ctrl-C (128 + SIGINT)
# What an interrupted command leaves, for its one line (files are written whole or not at all, lab2.core.atomic).
INTERRUPTED = {
    "sweep": "finished runs are kept; run the sweep again to resume",
    "book": "the results are untouched; build again",
    "train": "the run did not finish (its folder holds no summary.json)",
    "unpack-results": "each run is added whole or not at all; unpack again to add the rest",
    "code-check": "the stored verdict is unchanged; run the check again",
}


def _interrupted_line(command: str) -> str:
    left = INTERRUPTED.get(command)
    return f"python -m lab2{' ' + command if command else ''}: interrupted" + (f"; {left}" if left else "")


def _interrupted_while_importing(signum, frame) -> None:
    """Ctrl-C while the command imports lab2 and its libraries (up to a second on a loaded machine), before
    main() can catch it: the same one line, not a traceback through the import machinery; nothing was written."""
    command = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in INTERRUPTED else ""
    sys.stderr.write(_interrupted_line(command) + "\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _interrupted_while_importing)  # main() puts Python's own back

import argparse  # noqa: E402 - after the handler above: these imports are the seconds it covers
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from lab2.core.config import (BATCHNORM_VARIANTS, DROPOUT_KINDS, MODELS, PRECISIONS, ConfigError,  # noqa: E402
                              RunConfig, flag)
from lab2.runs.executors import CLUSTERS  # noqa: E402
from lab2.runs.grid import PARAMS_DIR  # noqa: E402

CHOICES = {"model": MODELS, "dropout_kind": DROPOUT_KINDS, "precision": PRECISIONS,
           "batchnorm_variant": BATCHNORM_VARIANTS}
CPU_BENCH_CHANNELS = 64  # the bench's CNN width on a CPU


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, named, typed and documented from the field itself."""
    for field in dataclasses.fields(RunConfig):
        help_text = field.metadata["help"]
        if field.type is bool:
            # The only boolean defaults to on, so the flag switches it off.
            parser.add_argument(f"--no-{field.name}", dest=field.name, action="store_false",
                                help=f"turn off: {help_text}")
            continue
        value_type = int if field.type == (int | None) else field.type
        parser.add_argument(flag(field.name), type=value_type, default=field.default, choices=CHOICES.get(field.name),
                            help=f"{help_text} (default: {field.default})")


def _add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when present; default)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="CIFAR-10: official batches or image folder, as a folder or .tar.gz "
                             "(default: $LAB2_DATA, else data/)")


def _check_data_dir(parser, data_dir) -> None:
    from lab2.core.data import DataError, locate

    if data_dir is not None:
        try:
            locate(data_dir)
        except DataError as error:
            parser.error(f"--data-dir: {error}")


def train_command(parser, args) -> int:
    from lab2.core.data import DataError
    from lab2.core.step import choose_step_mode
    from lab2.core.summary import FINISHED_STATUSES
    from lab2.core.train import choose_device, failed_result, run
    from lab2.runs.record import check_writable, save_run

    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(RunConfig)}
    try:
        config = RunConfig.from_dict(values)
    except ConfigError as error:
        parser.error(f"{flag(error.field)}: {error.message}")
    problem = check_writable(args.out)
    if problem:
        parser.error(f"--out: {problem}")
    _check_data_dir(parser, args.data_dir)
    try:  # the device asked for, and the step mode $LAB2_STEP_MODE asks for, exist here
        choose_step_mode(choose_device(args.device))
    except ValueError as error:
        parser.error(str(error))
    started = time.perf_counter()
    try:
        result = run(config, args.data_dir, args.device, progress=not args.quiet)
    except DataError as error:  # the data is incomplete: nothing is written
        parser.error(str(error))
    except ConfigError as error:  # a size the data cannot give (a batch larger than the training set), before training
        parser.error(f"{flag(error.field)}: {error.message}")
    except Exception as error:  # noqa: BLE001 - recorded as a failed run, then reported
        result = failed_result(error, time.perf_counter() - started)
    save_run(args.out, config, result)
    print(json.dumps(result.summary, indent=2))
    return 0 if result.summary["status"] in FINISHED_STATUSES else 1


def _seed_list(text: str) -> list[int]:
    """--seeds 0,1 -> [0, 1]."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers such as 0,1, got {text!r}") from None


def sweep_command(parser, args) -> int:
    from lab2.runs.sweep import SweepError, sweep

    try:
        return sweep(profile=args.profile, jobs=args.jobs, only=args.only, dry_run=args.dry_run,
                     data_dir=args.data_dir, device=args.device, results_root=args.results,
                     params_dir=args.params, seeds=args.seeds, scheduler=args.scheduler, cluster=args.cluster,
                     keep_finished=args.keep_finished, threads=args.threads)
    except SweepError as error:
        parser.error(str(error))


def bench_command(parser, args) -> int:
    if args.overhead:
        return overhead_command(parser, args)
    from lab2.core.train import choose_device
    from lab2.runs.grid import baseline_config
    from lab2.tools.bench import format_results, run_bench

    try:
        device = choose_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    # The report's CNN (params/) on a GPU; a narrower one on a CPU, so that the bench takes seconds, not minutes.
    channels = args.channels or (baseline_config("cnn").channels if device.type == "cuda" else CPU_BENCH_CHANNELS)
    results = run_bench(args.models.split(","), device, channels, args.repeats, args.steps)
    print(format_results(results))
    if args.json:
        from lab2.core.atomic import write_json

        write_json(args.json, [dict(dataclasses.asdict(r), ratio=r.ratio) for r in results])
    return 0


def overhead_command(parser, args) -> int:
    from lab2.tools import overhead

    models = args.models.split(",")
    unknown = [model for model in models if model not in MODELS]
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} is no model; allowed: {', '.join(MODELS)}")
    if args.repeats < 1:
        parser.error(f"--repeats: must be an integer >= 1, got {args.repeats}")
    _check_data_dir(parser, args.data_dir)
    costs = overhead.measure(models, args.repeats, args.data_dir)
    print(overhead.format_costs(costs))
    if args.json:
        from lab2.core.atomic import write_json

        write_json(args.json, [dict(dataclasses.asdict(cost), fixed_s=cost.fixed_s) for cost in costs])
    return 0


def book_command(parser, args) -> int:
    from lab2.book.build import BookError, BookFault, build_book

    try:
        return build_book(args.profile, args.results, args.output, pdf=args.pdf)
    except BookFault as error:  # not a refusal: the build began and could not go on
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except BookError as error:
        parser.error(str(error))


def code_check_command(parser, args) -> int:
    from lab2.tools.code_check import CheckError, code_check

    _check_data_dir(parser, args.data_dir)
    try:
        return code_check(args.profile, args.results, args.data_dir)
    except CheckError as error:
        parser.error(str(error))


def gpu_check_command(parser, args) -> int:
    from lab2.tools.gpu_check import gpu_check
    from lab2.runs.grid import GridError, get_profile

    if args.budget_s <= 0:
        parser.error(f"--budget-s: must be a number of seconds > 0, got {args.budget_s}")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs: must be an integer >= 1, got {args.jobs}")
    try:
        get_profile(args.profile)
    except GridError as error:
        parser.error(f"--profile: {error}")
    _check_data_dir(parser, args.data_dir)
    return gpu_check(args.profile, args.budget_s, args.jobs, args.data_dir, args.dry_run, args.out)


def unpack_results_command(parser, args) -> int:
    from lab2.runs.archive import unpack_runs

    for archive in args.archives:
        if not archive.is_file():
            parser.error(f"{archive}: no such archive; give the .tgz files a gpu-check call wrote")
    for archive in args.archives:
        try:
            outcome = unpack_runs(archive, args.results)
        except ValueError as error:
            parser.error(str(error))
        print(f"{archive}: {len(outcome['added'])} runs added, {len(outcome['kept'])} already on disk")
        for line in outcome["kept"]:
            print(f"  {line}")
    return 0


def main(argv=None) -> int:
    if signal.getsignal(signal.SIGINT) is _interrupted_while_importing:  # imported: from here on main() catches it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(prog="python -m lab2", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one model and write its results to --out")
    _add_config_flags(train)
    _add_common_flags(train)
    train.add_argument("--out", type=Path, required=True, help="folder for the run's files (see lab2/runs/record.py)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=train_command)

    sweep = commands.add_parser("sweep", help="run every experiment of params/ under a profile, with papermill")
    sweep.add_argument("--profile", default="quick", help="full, quick (default) or smoke; see params/profiles.yaml")
    sweep.add_argument("--jobs", type=int, default=None, help="notebooks run at once (default: by device)")
    sweep.add_argument("--threads", type=int, default=None,
                       help="torch threads per run (default: the free cores shared by the jobs, at most cores // jobs; "
                            "on Dask workers: the worker's cores per run slot)")
    sweep.add_argument("--only", default=None, help="run only experiments or run ids matching this glob")
    sweep.add_argument("--seeds", type=_seed_list, default=None,
                       help="run only these of the profile's seeds, e.g. 0,1 (default: all; runs stay seed-major)")
    sweep.add_argument("--dry-run", action="store_true", help="list what would run and what is cached; run nothing")
    sweep.add_argument("--keep-finished", action="store_true",
                       help="keep finished runs whose code has changed since they ran (default: run them again)")
    sweep.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (its workers share the results folder)")
    sweep.add_argument("--cluster", default=None, choices=CLUSTERS,
                       help="start a Dask cluster: local (--jobs workers), local-gpus (one worker per GPU, --jobs runs "
                            "each), slurm (pip install .[cluster]; settings from Dask's jobqueue config)")
    sweep.add_argument("--results", type=Path, default=None, help="results root (default: results/)")
    sweep.add_argument("--params", type=Path, default=PARAMS_DIR, help="experiments and profiles (default: params/)")
    _add_common_flags(sweep)
    sweep.set_defaults(handler=sweep_command)

    bench = commands.add_parser("bench", help="training-step throughput, lab2 layers vs torch.nn")
    bench.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {','.join(MODELS)} (default: all)")
    bench.add_argument("--channels", type=int, default=None,
                       help=f"CNN channels (default: the report's, params/cnn.yaml's, on CUDA; {CPU_BENCH_CHANNELS} on a CPU)")
    bench.add_argument("--repeats", type=int, default=7, help="timed blocks per implementation (median reported)")
    bench.add_argument("--steps", type=int, default=10, help="training steps per timed block")
    bench.add_argument("--device", default="auto", help="cpu, cuda or auto")
    bench.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    bench.add_argument("--overhead", action="store_true",
                       help="instead: a run's fixed cost (wall time minus fit) over --repeats smoke runs executed as a "
                            "sweep does, one at a time on the CPU, for each of --models")
    bench.add_argument("--data-dir", type=Path, default=None, help="CIFAR-10 for --overhead (default: $LAB2_DATA, else data/)")
    bench.set_defaults(handler=bench_command)

    book = commands.add_parser("book", help="build the HTML book from a profile's results (warnings are errors)")
    book.add_argument("--profile", default="quick", help="whose results to render: quick (default), full or smoke")
    book.add_argument("--results", type=Path, default=None, help="results root (default: results/)")
    book.add_argument("--output", type=Path, default=None,
                      help="folder that receives _build/; the HTML lands in OUTPUT/_build/html (default: book/)")
    book.add_argument("--pdf", action="store_true",
                      help="also print the book as one PDF with Debian's Chromium, to OUTPUT/_build/pdf/, and link it "
                           "from the HTML's header")
    book.set_defaults(handler=book_command)

    code = commands.add_parser("code-check", help="whether code changed since committed runs can move their numbers: "
                                                  "small runs with each recorded commit's code and the checkout's; "
                                                  "the verdict is stored with the results, where the book shows it")
    code.add_argument("--profile", default="full",
                      help="whose runs to check: full (default; its runs are committed, never run again by the book), "
                           "quick or smoke")
    code.add_argument("--results", type=Path, default=None, help="results root (default: results/)")
    code.add_argument("--data-dir", type=Path, default=None,
                      help="CIFAR-10 for the small runs (default: where the profile's sweep found it, else $LAB2_DATA, "
                           "else data/)")
    code.set_defaults(handler=code_check_command)

    check = commands.add_parser("gpu-check", help="on a GPU: versions, bench, epoch times, then the sweep within a budget")
    check.add_argument("--profile", default="full", help="profile to sweep (default: full)")
    check.add_argument("--budget-s", type=float, default=480, help="wall-clock seconds for the whole check (default: 480)")
    check.add_argument("--jobs", type=int, default=None, help="CNN runs at once in the sweep (default: the sweep's own, 4 on a GPU)")
    check.add_argument("--dry-run", action="store_true",
                       help="rehearse on a CPU: toy sizes, and real smoke-profile sweeps into --out")
    check.add_argument("--data-dir", type=Path, default=None, help="CIFAR-10 location (default: $LAB2_DATA, else data/)")
    check.add_argument("--out", type=Path, default=Path("results/gpu-check"),
                       help="where gpu_check.json and the archives of finished runs go, kept current as the "
                            "call goes (on the device machine: $OUT; default: results/gpu-check)")
    check.set_defaults(handler=gpu_check_command)

    unpack = commands.add_parser("unpack-results", help="add the runs of gpu-check archives to results/, never overwriting")
    unpack.add_argument("archives", type=Path, nargs="+", help="results-<profile>-<model>.tgz files")
    unpack.add_argument("--results", type=Path, default=Path("results"), help="results root (default: results/)")
    unpack.set_defaults(handler=unpack_results_command)

    args = parser.parse_args(argv)
    # Errors are reported by the sub-command's parser, so its usage line is the one shown.
    command = commands.choices[args.command]
    try:
        return args.handler(command, args)
    except KeyboardInterrupt:
        # Ctrl-C before a sweep's runs started or after they ended (while they run, the sweep stops them and
        # says so itself), or during any other command: one line, no traceback.
        print(_interrupted_line(args.command), file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
