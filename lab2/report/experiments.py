"""The roles experiments play in the chapters, recognised by what an experiment changes.

params/ names the experiments, and the sweep's manifest keeps each one as params/ declared
it (the fields it sets on its model's baseline). The book never spells those names: a
chapter asks for the runs of a role, "the grid over batch_size" or "the baseline without
BatchNorm", and `results.load_results` tells each run which roles its experiments play. So an
experiment renamed in params/ keeps its page, and one that plays no role in a chapter (say
a grid over `hidden`) is rendered by the appendix.
"""

from dataclasses import dataclass

GRID = "a grid"  # the experiment varies this field, over whatever values
ANY = "any value"  # the experiment fixes this field, at whatever value


@dataclass(frozen=True)
class Role:
    """What an experiment in this role declares: exactly these fields, each a value, GRID or ANY."""

    # The role's identifier, as the original report's CSV (and, by convention, params/) names its experiment:
    # the CSV and the facts a chapter quotes (test_no_dropout, ...) are keyed by it. Runs are matched by `changes`.
    name: str
    label: str  # how tables and figures name the role
    changes: tuple[tuple[str, object], ...]

    def matches(self, fields: dict) -> bool:
        """Whether an experiment declaring `fields` (params/ syntax: a list is a grid) plays this role."""
        if set(fields) != {field for field, _ in self.changes}:
            return False
        for field, wanted in self.changes:
            value = fields[field]
            if wanted == GRID:
                if not isinstance(value, list):
                    return False
            elif isinstance(value, list) or (wanted != ANY and value != wanted):
                return False
        return True


def role(name: str, label: str, **changes) -> Role:
    return Role(name, label, tuple(sorted(changes.items())))


BASELINE = role("best", "best")  # the model's baseline as it is: the report's best setting
NO_DROPOUT = role("no_dropout", "without dropout", dropout_rate=0.0)
NO_BATCHNORM = role("no_batchnorm", "without BatchNorm", batchnorm=False)
DROPOUT_RATE_GRID = role("grid_dropout_rate", "dropout rate grid", dropout_rate=GRID)
BATCH_SIZE_GRID = role("grid_batch_size", "batch size grid", batch_size=GRID)
LEARNING_RATE_GRID = role("grid_learning_rate", "learning rate grid", learning_rate=GRID)
DROPOUT_KIND_GRID = role("dropout_kind", "dropout kind and rate grid", dropout_kind=GRID, dropout_rate=GRID)
NARROW_DROPOUT_RATE_GRID = role("narrow_dropout_rate", "dropout rate grid at another width", channels=ANY,
                                dropout_rate=GRID)

# Why the numbers differ: the best setting and the one without dropout at lower data fidelity;
# the report's settings as read on the CPU in fp32 (the device of the runs they are compared with);
# the settings of the lost-detail prediction with pixel noise; the BatchNorm variants.
JPEG_QUALITY_GRID = role("fidelity_jpeg_quality", "JPEG quality grid", dropout_rate=GRID, jpeg_quality=GRID)
PIXEL_NOISE_GRID = role("fidelity_pixel_noise", "pixel noise grid", dropout_rate=GRID, pixel_noise=GRID)
SAME_DEVICE_BATCH_SIZE = role("same_device_batch_size", "batch size grid, CPU fp32", precision=ANY, batch_size=GRID)
SAME_DEVICE_NO_DROPOUT = role("same_device_no_dropout", "without dropout, CPU fp32", precision=ANY, dropout_rate=0.0)
NOISE_DROPOUT_RATE = role("noise_dropout_rate", "dropout rate grid with pixel noise", pixel_noise=ANY,
                          precision=ANY, dropout_rate=GRID)
NOISE_BATCH_SIZE = role("noise_batch_size", "batch size grid with pixel noise", pixel_noise=ANY, precision=ANY,
                        batch_size=GRID)
NOISE_LEARNING_RATE = role("noise_learning_rate", "learning rate grid with pixel noise", pixel_noise=ANY,
                           precision=ANY, learning_rate=GRID)
NOISE_NO_BATCHNORM = role("noise_no_batchnorm", "without BatchNorm, with pixel noise", pixel_noise=ANY,
                          precision=ANY, batchnorm=False)
BATCHNORM_VARIANT_GRID = role("batchnorm_variant", "BatchNorm variant and batch size grid", precision=ANY,
                              batchnorm_variant=GRID, batch_size=GRID)
# Runs that leave the report's protocol on purpose (other data, another BatchNorm) or repeat it on a
# second device: statistics that describe the report's protocol leave them out (results.protocol).
DEPARTURES = (JPEG_QUALITY_GRID, PIXEL_NOISE_GRID, SAME_DEVICE_BATCH_SIZE, SAME_DEVICE_NO_DROPOUT, NOISE_DROPOUT_RATE,
              NOISE_BATCH_SIZE, NOISE_LEARNING_RATE, NOISE_NO_BATCHNORM, BATCHNORM_VARIANT_GRID)

ABLATIONS = (BASELINE, NO_DROPOUT, NO_BATCHNORM)
# The one-factor grids around the baseline, by the field they vary.
GRIDS = {"dropout_rate": DROPOUT_RATE_GRID, "batch_size": BATCH_SIZE_GRID, "learning_rate": LEARNING_RATE_GRID}
# What the chapters show of each model; any other experiment goes to the appendix.
SHOWN = {
    "mlp": (*ABLATIONS, *GRIDS.values(), *DEPARTURES),
    "cnn": (*ABLATIONS, *GRIDS.values(), DROPOUT_KIND_GRID, NARROW_DROPOUT_RATE_GRID),
}
# The chapter (book/<name>.md) that shows each role of SHOWN; "{model}": the model's own chapter.
CHAPTERS = {
    BASELINE: "{model}", NO_DROPOUT: "{model}", NO_BATCHNORM: "{model}", DROPOUT_KIND_GRID: "{model}",
    DROPOUT_RATE_GRID: "hyperparameters", BATCH_SIZE_GRID: "hyperparameters", LEARNING_RATE_GRID: "hyperparameters",
    NARROW_DROPOUT_RATE_GRID: "hyperparameters", **{departure: "why" for departure in DEPARTURES},
}
APPENDIX = "appendix"  # the chapter of the experiments that play no role
# The original report's experiments; book/data/original_report_results.csv names each by its role's name.
REPORTED = {reported.name: reported for reported in (
    BASELINE, NO_DROPOUT, NO_BATCHNORM, DROPOUT_RATE_GRID, BATCH_SIZE_GRID, LEARNING_RATE_GRID, DROPOUT_KIND_GRID)}


def role_of(model: str, fields: dict) -> Role | None:
    """The role in a chapter of an experiment of `model` declaring `fields`; None if it plays none."""
    return next((shown for shown in SHOWN.get(model, ()) if shown.matches(fields)), None)


def chapter_of(model: str, label: str | None) -> str:
    """The chapter that shows an experiment of `model` in the role labelled `label` (None: no role)."""
    role = next((shown for shown in CHAPTERS if shown.label == label), None)
    return APPENDIX if role is None else CHAPTERS[role].format(model=model)


def _covered(model: str, role: Role, fields: dict, reference) -> int:
    """How many of the values the report printed for `role` the grids of an experiment declaring `fields` hold."""
    if reference is None or role.name not in REPORTED:
        return 0
    printed = reference[(reference["model"] == model) & (reference["experiment"] == role.name)]
    return sum(any(value == declared for declared in fields[field])
               for field, wanted in role.changes if wanted == GRID for value in set(printed[field].dropna()))


def shown_roles(definitions: dict[str, dict], reference=None) -> dict[str, str]:
    """{'model/name': label} of the experiments a chapter shows, from a manifest's definitions.

    Where params/ declares several experiments of one role for one model, the chapter's is the one
    whose grids hold most of the values the report printed for that role (`reference`,
    results.load_reference): a user's extra batch-size grid, declared first or not, goes to the
    appendix and the report's own grid keeps the chapter. Among equals the first declared wins,
    so that no chapter mixes two experiments.
    """
    candidates: dict[tuple[str, Role], list[str]] = {}
    for experiment_id, fields in definitions.items():
        model = experiment_id.split("/", 1)[0]
        role = role_of(model, fields)
        if role is not None:
            candidates.setdefault((model, role), []).append(experiment_id)
    return {max(ids, key=lambda experiment_id: _covered(model, role, definitions[experiment_id], reference)): role.label
            for (model, role), ids in candidates.items()}
