"""What a reproduction found, as facts for the introduction's first screen.

Each fact is computed from a profile's results and the original report's numbers; the
introduction holds the sentences (book/intro.md). The committed full profile is read for
every book, so a book of a smaller profile opens with the full profile's findings too.
"""

import pandas as pd

from lab2.core.config import MODELS
from lab2.core.summary import METRICS
from lab2.report import claims, evidence, predictions, results
from lab2.report.experiments import BASELINE
from lab2.report.noise import NOT_MEASURED, number
from lab2.report.sections import plural, seeds_words
from lab2.runs.manifest import MANIFEST_FILE
from lab2.runs.record import profile_dir

TRAINING_METRICS = ("train_loss", "train_acc", "val_loss")  # the numbers that moved one way in the full profile


def best_against_original(ev: pd.DataFrame, model: str, metric: str = "test_acc") -> dict:
    """A model's best setting: our estimate, the report's number and the verdict of the noise rule."""
    row = evidence.rows(ev, model, BASELINE, metric).iloc[0]
    ours, verdict = row["estimate"], row["verdict"]
    return {"ours": ours.format(4), "seeds": plural(ours.count, "seed"),
            "original": f"{row['original']:.4f}",
            "difference": number(verdict.difference, 4, sign=True) if verdict.measured else NOT_MEASURED,
            "verdict": verdict.text}


def training_directions(comparison: pd.DataFrame, model: str = "mlp") -> str:
    """How our training numbers differ from the report's over the settings it printed (evidence.by_metric), in
    words: 'training loss higher in 11 of 11 settings (differences +0.047 to +0.315; 11 beyond noise); ...'."""
    found = evidence.by_metric(comparison).set_index(["model", "metric"])
    phrases = []
    for metric in TRAINING_METRICS:
        row = found.loc[(model, metric)]
        word, count = ("higher", row["higher"]) if row["higher"] >= row["lower"] else ("lower", row["lower"])
        phrases.append(f"{METRICS[metric].label} {word} in {count} of {row['with_runs']} settings (differences "
                       f"{number(row['smallest'], sign=True)} to {number(row['largest'], sign=True)}; "
                       f"{row['beyond']} beyond noise)")
    return "; ".join(phrases)


def progress(runs: pd.DataFrame, model: str) -> dict:
    """How much of a model's plan has run: runs, settings with a finished run, seeds, devices."""
    planned = runs[runs["model"] == model]
    finished = results.finished(planned)
    settings = planned.groupby(list(results.SETTING_FIELDS), dropna=False)
    done = finished.groupby(list(results.SETTING_FIELDS), dropna=False)
    return {"planned": len(planned), "finished": len(finished), "settings": settings.ngroups,
            "settings_run": done.ngroups,
            "seeds_run": seeds_words(sorted(finished["seed"].unique())) if len(finished) else "no seed",
            "devices": ", ".join(sorted(finished["device_name"].dropna().unique())) or "none"}


def claim_counts(judged: pd.DataFrame) -> dict:
    """How many claims have each outcome (claims.OUTCOMES), and the total they add up to."""
    counts = claims.verdict_counts(judged)
    names = {claims.HOLDS: "holds", claims.FAILS: "fails", claims.NOISE: "noise", claims.ONE_SEED: "one_seed",
             claims.NOT_JUDGED: "not_judged"}
    found = {names[outcome]: int(count) for outcome, count in counts.items()}
    found["total"] = len(judged)
    return found


def facts(page) -> dict:
    """Every fact the introduction's findings quote, for the profile of one page (lab2.report.page.Page)."""
    comparison = evidence.against_report(page.evidence, page.reference)
    found = {"profile": page.profile}
    for model in MODELS:
        found[model] = {**best_against_original(page.evidence, model), **progress(page.runs, model)}
    found["directions"] = training_directions(comparison)
    found["claims"] = claim_counts(claims.all_claims(page.evidence, page.runs, page.epochs, page.reference,
                                                     page.profile))
    found["predictions"] = prediction_facts(page.runs, page.reference)
    return found


def prediction_facts(runs: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """What the predictions of "Why the numbers differ" showed (lab2.report.predictions): the noise level
    calibrated on the best setting and the outcomes at the other settings; per BatchNorm variant, its
    predicted changes that held and the batch sizes where it agrees with the report."""
    noise = predictions.lost_detail(runs, reference)
    variants = predictions.batchnorm_variants(runs, reference)
    return {"level": noise.level, "noise": noise.counts,
            "variants": {variant: {**counts, **variants.agreement(variant)} for variant, counts in variants.counts.items()}}


def has_results(profile: str) -> bool:
    """Whether a profile's manifest is here (the full profile's is committed)."""
    return (profile_dir(profile) / MANIFEST_FILE).is_file()
