"""The code check's verdict: `results/<profile>/code-check.json`, the one module that writes or reads it.

A finished run records a sha256 per file of the code that computed it (env.json). When those files
differ from the checkout, `python -m lab2 code-check` (lab2.tools.code_check) asks whether the
difference can move a number: per recorded commit of such runs, it trains small runs with that
commit's code and with the checkout's, and stores here what it found, with the checkout's run code
it compared (CHECKED_CODE). The provenance page only reads it (`stored_check`): the verdict is
missing (never run), damaged, stale (the checkout's run code has changed since, or runs of a
commit it did not check need one) or current; the page says which and the command that
refreshes it. So building the book trains nothing.
"""

from dataclasses import dataclass, field
from pathlib import Path

from lab2.core.atomic import write_json
from lab2.core.summary import FINISHED_STATUSES
from lab2.runs import record
from lab2.runs.fingerprint import checkout_run_code, code_fingerprint, project_path

CODE_CHECK_FILE = "code-check.json"  # in results/<profile>/, beside the manifest
CHECKED_CODE = "checkout_code"  # the verdict's key for {file: sha256} of the checkout's run code it compared
NO_COMMIT = "unknown"  # the commit of runs that recorded none
# What a state of the stored verdict is called (StoredCheck.state).
CURRENT, MISSING, STALE, DAMAGED, NOT_NEEDED = "current", "missing", "stale", "damaged", "not needed"


def command(profile: str) -> str:
    """The command that writes (or refreshes) a profile's verdict."""
    return f"python -m lab2 code-check --profile {profile}"


@dataclass(frozen=True)
class CommitRuns:
    """The finished runs of one recorded commit whose code differs from the checkout's."""

    commit: str
    runs: list[str]  # their run ids
    models: list[str]  # the models among them, each checked with a small run of its own
    files: list[str]  # the fingerprinted files that differ from the checkout


def commits_to_check(folder: Path, manifest: dict) -> list[CommitRuns]:
    """Per recorded commit, the finished runs of the manifest whose code differs from the checkout (runs that
    recorded no code fingerprint are left out: there is nothing to compare)."""
    groups = {}
    for entry in manifest["runs"]:
        run = record.read_run(Path(folder) / entry["run_id"])
        changed = record.run_code_changes(run) if run.status in FINISHED_STATUSES else None
        if changed:
            group = groups.setdefault(run.environment.get("git_commit") or NO_COMMIT, ([], set(), set()))
            group[0].append(entry["run_id"])
            group[1].add(entry["config"]["model"])
            group[2].update(changed)
    return [CommitRuns(commit, runs, sorted(models), sorted(files)) for commit, (runs, models, files) in sorted(groups.items())]


def make_verdict(profile: str, checked_at: str, checkout_commit: str, checkout_code: dict, commits: dict) -> dict:
    """A verdict to store: commits maps each checked commit to what commit_outcome() describes (largest_difference
    and differences, or error)."""
    return {"profile": profile, "checked_at": checked_at, "checkout_commit": checkout_commit,
            CHECKED_CODE: checkout_code, "commits": commits}


def write_verdict(folder: Path, verdict: dict) -> None:
    """Store a verdict in the profile's results folder, whole or not at all."""
    write_json(Path(folder) / CODE_CHECK_FILE, verdict)


def read_verdict(folder: Path) -> dict | None:
    """The stored verdict; None when there is none. Raises RecordError naming the file when it cannot be used."""
    path = Path(folder) / CODE_CHECK_FILE
    if not path.is_file():
        return None
    verdict = record.read_json(path)
    if not (isinstance(verdict.get("commits"), dict) and isinstance(verdict.get(CHECKED_CODE), dict)):
        raise record.RecordError(f"{project_path(path)}: not a code check's verdict (it does not parse, or has no "
                                 f"commits and {CHECKED_CODE})")
    return verdict


def commit_outcome(checked: dict | None) -> str:
    """What the check of one commit found, in words."""
    if checked is None:
        return "not checked yet"
    if checked.get("error"):
        return f"not checked: {checked['error']}"
    if checked["largest_difference"] == 0:
        return "the same numbers: the change does not move them"
    return "different numbers: the change can move them"


@dataclass(frozen=True)
class StoredCheck:
    """The stored verdict as the provenance page shows it, against the runs and the checkout as they are now."""

    state: str  # CURRENT, MISSING, STALE, DAMAGED or NOT_NEEDED (no finished run's code differs)
    reasons: list[str] = field(default_factory=list)  # why it is stale or damaged
    rows: list[dict] = field(default_factory=list)  # per commit to check: its runs, files and the stored outcome
    checked_at: str | None = None
    checkout_commit: str | None = None


def stored_check(folder: Path, manifest: dict) -> StoredCheck:
    """The stored verdict of a profile's results folder, judged current or not against the checkout's run code and
    the runs that need a check now; reads, never trains."""
    needed = commits_to_check(folder, manifest)
    try:
        verdict = read_verdict(folder)
    except record.RecordError as error:
        verdict, damage = None, str(error)
    else:
        damage = None
    checked = (verdict or {}).get("commits", {})
    rows = [{"commit": group.commit, "runs": len(group.runs), "files that differ": ", ".join(group.files),
             "largest difference": checked.get(group.commit, {}).get("largest_difference"),
             "outcome": commit_outcome(checked.get(group.commit))} for group in needed]
    if not needed:
        return StoredCheck(NOT_NEEDED)
    if damage:
        return StoredCheck(DAMAGED, [damage], rows)
    if verdict is None:
        return StoredCheck(MISSING, [], rows)
    now = code_fingerprint(checkout_run_code())
    compared = verdict[CHECKED_CODE]
    changed = sorted(name for name in now.keys() | compared.keys() if now.get(name) != compared.get(name))
    unchecked = [group.commit for group in needed if group.commit not in checked]
    reasons = ([f"the checkout's run code has changed since in {', '.join(changed)}"] if changed else [])
    reasons += [f"the runs of commit {commit[:12]} were not checked" for commit in unchecked]
    return StoredCheck(STALE if reasons else CURRENT, reasons, rows, verdict.get("checked_at"),
                       verdict.get("checkout_commit"))
