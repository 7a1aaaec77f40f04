"""The run config: one spelling of every field, its validation, and the run id."""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields

MODELS = ("mlp", "cnn")
MODEL_LABELS = {"mlp": "MLP", "cnn": "CNN"}  # how a reader names each model
DROPOUT_KINDS = ("2d", "1d")
PRECISIONS = ("tf32", "fp32", "bf16")
# How a hand-written BatchNorm may differ from torch.nn's (lab2.core.layers.batch_norm): standard is
# torch.nn's; the others are two ways a student's layer can differ, tested in "Why the numbers differ".
BATCHNORM_VARIANTS = ("standard", "momentum_swapped", "running_in_training")


# Inverted dropout scales the units it keeps by 1 / (1 - p), so p = 1 (keep nothing) has no
# scale: the run config and the layers (lab2.core.layers) both allow exactly these rates.
DROPOUT_RATES = "[0, 1)"


def is_dropout_rate(p: float) -> bool:
    """Whether p is a dropout probability the layers can apply: in DROPOUT_RATES."""
    return 0.0 <= p < 1.0


class ConfigError(ValueError):
    """A config value that is not allowed; names the field and what is allowed."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message

    # Equal by what they say: the sweep finds one problem for many runs and names it once.
    def __eq__(self, other) -> bool:
        return isinstance(other, ConfigError) and (self.field, self.message) == (other.field, other.message)

    def __hash__(self) -> int:
        return hash((self.field, self.message))


def setting(default, label: str, help: str, unit: str | None = None):
    """A RunConfig field with the reader's name for it (tables, figures, sentences), its unit, and the CLI's help."""
    metadata = {"label": label, "help": help, **({"unit": unit} if unit else {})}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides the numbers one training run produces.

    The defaults, what `python -m lab2 train` runs without flags, are params/mlp.yaml's baseline
    (the report's best MLP setting) under the report's protocol; a test keeps them equal.
    """

    model: str = setting("mlp", "model", " or ".join(MODELS))
    dropout_rate: float = setting(0.5, "dropout rate", f"probability of dropping a unit, in {DROPOUT_RATES}")
    batch_size: int = setting(500, "batch size", "images per optimizer step", unit="images")
    learning_rate: float = setting(1e-3, "learning rate", "Adam's fixed learning rate, > 0")
    num_epochs: int = setting(50, "epochs", "passes over the training set")
    batchnorm: bool = setting(True, "BatchNorm", "BatchNorm after each hidden layer")
    batchnorm_variant: str = setting(
        "standard", "BatchNorm variant", "standard (torch.nn's), momentum_swapped (running statistics keep 0.9 of "
        "each new batch) or running_in_training (training normalises with the running statistics)")
    dropout_kind: str = setting("2d", "dropout kind", "CNN only: 2d drops whole channels, 1d single elements")
    channels: int = setting(256, "channels", "CNN only: channels of both conv layers")
    hidden: int = setting(1024, "hidden units", "MLP only: width of the hidden layer")
    train_size: int | None = setting(
        None, "training images", "train on the first N images of the 40,000 (default: all)")
    eval_size: int | None = setting(
        None, "evaluation images", "evaluate on the first N validation and test images (default: all 10,000)")
    jpeg_quality: int | None = setting(
        None, "JPEG quality",
        "re-encode every image as JPEG at this quality (1-95) before scaling (default: the images as read)")
    pixel_noise: float = setting(
        0.0, "pixel noise",
        "add fixed Gaussian noise of this many grey levels (0-64) to every image (default: 0, none)", unit="grey levels")
    seed: int = setting(0, "seed", "seed for weights, shuffling and dropout")
    precision: str = setting(
        "tf32", "precision", "on CUDA: tf32 (default), fp32, or bf16 autocast; a CPU always computes in fp32")

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """Build a validated config from plain values; unknown keys are refused."""
        unknown = sorted(set(values) - set(FIELD_NAMES))
        if unknown:
            raise ConfigError(unknown[0], f"unknown key; allowed keys are {', '.join(FIELD_NAMES)}")
        for name, value in values.items():
            _check_type(name, value)
        return cls(**values)

    def __post_init__(self):
        self.validate()  # once, where a config is made: from_dict, dataclasses.replace or a direct call

    def validate(self) -> None:
        """Raise ConfigError for the first value that is out of range."""
        for name in FIELD_NAMES:
            _check_type(name, getattr(self, name))
        for name, ok, allowed in self.bounds():
            if not ok:
                raise ConfigError(name, f"{allowed}, got {getattr(self, name)!r}")
        if not self.batchnorm and self.batchnorm_variant != "standard":
            raise ConfigError("batchnorm_variant", f"applies only with BatchNorm on (batchnorm: true), got "
                                                   f"{self.batchnorm_variant!r} without BatchNorm")
        if self.train_size is not None and self.batch_size > self.train_size:
            raise ConfigError("batch_size", f"must be at most train_size ({self.train_size}), got {self.batch_size}")

    def bounds(self) -> list[tuple[str, bool, str]]:
        """(field, whether its value is within the field's own bounds, what they allow), each field on its own."""
        return [
            ("model", self.model in MODELS, f"must be one of {', '.join(MODELS)}"),
            ("dropout_rate", is_dropout_rate(self.dropout_rate), f"must be in {DROPOUT_RATES}"),
            ("batch_size", self.batch_size >= 2, "must be an integer >= 2 (BatchNorm needs two samples)"),
            ("learning_rate", 0.0 < self.learning_rate <= 1.0, "must be in (0, 1]"),
            ("num_epochs", self.num_epochs >= 1, "must be an integer >= 1"),
            ("batchnorm_variant", self.batchnorm_variant in BATCHNORM_VARIANTS,
             f"must be one of {', '.join(BATCHNORM_VARIANTS)}"),
            ("dropout_kind", self.dropout_kind in DROPOUT_KINDS, f"must be one of {', '.join(DROPOUT_KINDS)}"),
            ("channels", self.channels >= 1, "must be an integer >= 1"),
            ("hidden", self.hidden >= 1, "must be an integer >= 1"),
            ("train_size", self.train_size is None or self.train_size >= 2, "must be an integer >= 2, or empty for all"),
            ("eval_size", self.eval_size is None or self.eval_size >= 1, "must be an integer >= 1, or empty for all"),
            ("jpeg_quality", self.jpeg_quality is None or 1 <= self.jpeg_quality <= 95,
             "must be an integer in [1, 95], or empty for the images as read"),
            ("pixel_noise", 0.0 <= self.pixel_noise <= 64.0, "must be a number of grey levels in [0, 64]"),
            ("seed", self.seed >= 0, "must be an integer >= 0"),
            ("precision", self.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
        ]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELD_NAMES = tuple(f.name for f in fields(RunConfig))
FIELD_LABELS = {f.name: f.metadata["label"] for f in fields(RunConfig)}  # how a reader names each setting
FIELD_UNITS = {f.name: f.metadata["unit"] for f in fields(RunConfig) if "unit" in f.metadata}
# Fields added after runs were committed: at their default they are left out of the run id,
# so that a run made before they existed keeps its id (and stays cached).
HASHED_ONLY_WHEN_SET = {"jpeg_quality": None, "pixel_noise": 0.0, "batchnorm_variant": "standard"}
FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}


def flag(field_name: str) -> str:
    """The command line's spelling of a field: dropout_rate -> --dropout-rate."""
    return "--" + field_name.replace("_", "-")


def _check_type(name: str, value) -> None:
    expected = FIELD_TYPES[name]
    optional = expected in (int | None,)
    if optional and value is None:
        return
    base = int if optional else expected
    # bool is a subclass of int, and an int is a fine float; neither the other way round.
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, base)
    if not ok:
        kind = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}[base]
        raise ConfigError(name, f"must be {kind}, got {value!r}")


def check_value(name: str, value) -> None:
    """Raise ConfigError if value is not allowed for field `name` on its own (its type and bounds), before it
    meets the other fields: how params/ is checked where it is written, before a profile changes it."""
    _check_type(name, value)
    probe = RunConfig()  # the defaults, a valid config
    object.__setattr__(probe, name, value)  # frozen: set without checking the whole (bounds() checks this field)
    for field_name, ok, allowed in probe.bounds():
        if field_name == name and not ok:
            raise ConfigError(name, f"{allowed}, got {value!r}")


RUN_ID_HASH_LENGTH = 12  # hex digits of the config-and-data hash in a run id


def run_id(config: RunConfig, data_fingerprint: str) -> str:
    """A short, stable name for a run: its model and a hash of its config and data."""
    values = {name: value for name, value in config.to_dict().items()
              if not (name in HASHED_ONLY_WHEN_SET and value == HASHED_ONLY_WHEN_SET[name])}
    payload = json.dumps({"config": values, "data": data_fingerprint}, sort_keys=True)
    return f"{config.model}-{hashlib.sha256(payload.encode()).hexdigest()[:RUN_ID_HASH_LENGTH]}"
