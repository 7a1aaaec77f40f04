"""Write files whole or not at all, so a killed process never leaves a half-written one."""

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: Path | str, mode: str = "w"):
    """Open a temporary file beside path; on success it replaces path, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path | str, value) -> None:
    """Write value as indented JSON, atomically."""
    with atomic_write(path) as handle:
        json.dump(value, handle, indent=2, sort_keys=True)
        handle.write("\n")
