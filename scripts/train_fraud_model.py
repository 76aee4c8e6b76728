"""Train the shipped fraud model on synthetic payments and write its JSON and model card.

    python scripts/train_fraud_model.py            # writes both files
    python scripts/train_fraud_model.py --check    # fails if re-training changes them

Data: consecutive days from core.synthetic_payments with one seed. The first HISTORY_DAYS
days are history only; the next days train, then validation days choose the class weighting
(by AUPRC), then test days, never looked at before, give the reported metrics. Features come
from core.fraud_features exactly as in production: each transaction from its account's
earlier transactions of the 30 days before it.

Deterministic: fixed seeds, a deterministic solver and rounded numbers, so a re-run writes
identical files. Needs the dev extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from fintrack_assets.core.fraud_features import FEATURES, payment_features
from fintrack_assets.core.fraud_model import MODEL_FILE, FraudModel
from fintrack_assets.core.synthetic_payments import FRAUD_SHARE, PATTERNS, generate_payments

ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = ROOT / "fintrack_assets" / "data" / MODEL_FILE
CARD_PATH = ROOT / "docs" / "fraud_model_card.md"

SEED = 7
ACCOUNTS = 10_000
PER_ACCOUNT = 4.0
FIRST_DAY = dt.date(2025, 1, 1)
HISTORY_DAYS = 30
TRAIN_DAYS = 21
VALIDATION_DAYS = 4
TEST_DAYS = 5
VERSION = "logreg-1"
DIGITS = 10
"""Significant digits kept in the JSON, so float noise cannot change the file."""


def _round(x: float) -> float:
    return float(f"{x:.{DIGITS}g}")


def _days(first: dt.date, count: int) -> list[dt.date]:
    return [first + dt.timedelta(days=k) for k in range(count)]


def build_dataset() -> pl.DataFrame:
    """FEATURES, is_fraud and `day` for every transaction after the history days."""
    total = HISTORY_DAYS + TRAIN_DAYS + VALIDATION_DAYS + TEST_DAYS
    days = [generate_payments(d, ACCOUNTS, PER_ACCOUNT, SEED) for d in _days(FIRST_DAY, total)]
    history = pl.concat(days[:HISTORY_DAYS])
    labelled = pl.concat(days[HISTORY_DAYS:])
    # One call for every later day: each row sees only earlier rows, in history or in the
    # range, so this equals day-by-day scoring with 30 days of history each.
    features = payment_features(labelled, history, HISTORY_DAYS)
    return features.with_columns(
        labelled["is_fraud"].alias("is_fraud"), labelled["ts"].dt.date().alias("day")
    )


def _split(data: pl.DataFrame) -> dict[str, pl.DataFrame]:
    start = FIRST_DAY + dt.timedelta(days=HISTORY_DAYS)
    bounds = np.cumsum([0, TRAIN_DAYS, VALIDATION_DAYS, TEST_DAYS])
    names = ("train", "validation", "test")
    return {
        name: data.filter(
            pl.col("day").is_between(
                start + dt.timedelta(days=int(bounds[k])),
                start + dt.timedelta(days=int(bounds[k + 1]) - 1),
            )
        )
        for k, name in enumerate(names)
    }


def _xy(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame.select(FEATURES).to_numpy(), frame["is_fraud"].to_numpy()


def _best_f1_threshold(y: np.ndarray, score: np.ndarray) -> float:
    precision, recall, thresholds = precision_recall_curve(y, score)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def _at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = score >= threshold
    tp = int((flagged & (y == 1)).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int((y == 1).sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": _round(precision),
        "recall": _round(recall),
        "f1": _round(f1),
        "flagged_share": _round(float(flagged.mean())),
    }


def train() -> tuple[FraudModel, dict[str, object]]:
    started = time.perf_counter()
    parts = _split(build_dataset())
    x_train, y_train = _xy(parts["train"])
    x_val, y_val = _xy(parts["validation"])
    y_test = parts["test"]["is_fraud"].to_numpy()
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0)
    scale[scale == 0] = 1.0

    def standardise(x: np.ndarray) -> np.ndarray:
        return (x - mean) / scale

    candidates = {}
    for weighting in (None, "balanced"):
        fit = LogisticRegression(C=1.0, class_weight=weighting, max_iter=2000, solver="lbfgs")
        fit.fit(standardise(x_train), y_train)
        auprc = average_precision_score(y_val, fit.predict_proba(standardise(x_val))[:, 1])
        candidates[weighting or "none"] = (auprc, fit)
    chosen = max(candidates, key=lambda k: candidates[k][0])
    fit = candidates[chosen][1]

    # Round first, then measure with the rounded model: the metrics are the shipped model's.
    coef = [_round(c) for c in fit.coef_[0]]
    intercept = _round(float(fit.intercept_[0]))
    mean_r, scale_r = [_round(v) for v in mean], [_round(v) for v in scale]
    draft = FraudModel(
        "draft", FEATURES, tuple(mean_r), tuple(scale_r), tuple(coef), intercept, 0.5
    )

    def scores(frame: pl.DataFrame) -> np.ndarray:
        return draft.score(frame)["fraud_score"].to_numpy()

    train_score, test_score = scores(parts["train"]), scores(parts["test"])
    threshold = _round(_best_f1_threshold(y_train, train_score))
    digest = hashlib.sha256(json.dumps([coef, intercept, mean_r, scale_r]).encode()).hexdigest()
    metrics = {
        "test_auc": _round(roc_auc_score(y_test, test_score)),
        "test_auprc": _round(average_precision_score(y_test, test_score)),
        "test_rows": len(y_test),
        "test_fraud_rows": int(y_test.sum()),
        "test_fraud_rate": _round(float(y_test.mean())),
        "test_at_threshold": _at_threshold(y_test, test_score, threshold),
        "train_at_threshold": _at_threshold(y_train, train_score, threshold),
        "validation_auprc": {k: _round(v[0]) for k, v in candidates.items()},
    }
    metrics["auc"], metrics["auprc"] = metrics["test_auc"], metrics["test_auprc"]
    trained_on = {
        "generator": "fintrack_assets.core.synthetic_payments.generate_payments",
        "seed": SEED,
        "accounts": ACCOUNTS,
        "per_account": PER_ACCOUNT,
        "history_days": [str(FIRST_DAY), str(FIRST_DAY + dt.timedelta(days=HISTORY_DAYS - 1))],
        **{
            f"{name}_days": [str(parts[name]["day"].min()), str(parts[name]["day"].max())]
            for name in parts
        },
        "train_rows": len(y_train),
        "train_fraud_rate": _round(float(y_train.mean())),
        "validation_rows": len(y_val),
        "validation_fraud_rate": _round(float(y_val.mean())),
        "class_weight": chosen,
        "solver": "sklearn LogisticRegression(lbfgs, C=1.0) on standardised features",
        "threshold_rule": "best F1 on the training days",
    }
    model = FraudModel(
        model_version=f"{VERSION}-{digest[:8]}",
        features=FEATURES,
        mean=tuple(mean_r),
        scale=tuple(scale_r),
        coef=tuple(coef),
        intercept=intercept,
        threshold=threshold,
        trained_on=trained_on,
        metrics=metrics,
    )
    print(f"trained in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return model, {"positives": {k: int(v["is_fraud"].sum()) for k, v in parts.items()}}


def model_json(model: FraudModel) -> str:
    return json.dumps(model.to_dict(), indent=2) + "\n"


def model_card(model: FraudModel) -> str:
    m, t = model.metrics, model.trained_on
    at = m["test_at_threshold"]
    sizes = {
        "train": (t["train_rows"], t["train_fraud_rate"]),
        "validation": (t["validation_rows"], t["validation_fraud_rate"]),
        "test": (m["test_rows"], m["test_fraud_rate"]),
    }
    splits = "\n".join(
        f"| {name} | {t[name + '_days'][0]} to {t[name + '_days'][1]} | {rows:,} | {rate:.3%} |"
        for name, (rows, rate) in sizes.items()
    )
    weights = " and ".join(f"`{k}` ({v:.4f})" for k, v in m["validation_auprc"].items())
    rows = "\n".join(
        f"| `{name}` | {_MEANINGS[name]} | {c:+.4f} | {mu:.4g} | {s:.4g} |"
        for name, c, mu, s in zip(model.features, model.coef, model.mean, model.scale, strict=True)
    )
    return f"""# Fraud model card: `{model.model_version}`

Generated by `scripts/train_fraud_model.py` with the weights in
`fintrack_assets/data/{MODEL_FILE}`; re-running the script rewrites both files identically.

## Intended use
Scoring the day's card payments in the `fraud_predictions` asset (`FINTRACK_FRAUD_SCORER=local`)
so that suspicious ones are reviewed first. It is a ranking aid and a demo of the pipeline, not
a decision system: nothing should be blocked or refused on its score alone.

## Model
Logistic regression on the {len(model.features)} standardised features of
`core/fraud_features.py` (z = (x - mean) / scale); `fraud_score` = sigmoid(intercept + sum
coef x z), `is_fraud` = `fraud_score >= {model.threshold:.4g}`, `reasons` = the three features
with the largest positive coef x z. Class weighting: `{t["class_weight"]}`, the better of
{weights} by validation AUPRC. Threshold: {t["threshold_rule"]}.

| feature | meaning | coef | mean | scale |
| --- | --- | --- | --- | --- |
{rows}
| intercept | | {model.intercept:+.4f} | | |

## Data
Synthetic only: `generate_payments` (seed {t["seed"]}, {t["accounts"]:,} accounts, about
{t["per_account"]} payments per account per day, about {FRAUD_SHARE:.1%} fraud injected as
{", ".join(PATTERNS)} incidents). Days {t["history_days"][0]} to {t["history_days"][1]} are
history only, so every labelled day has 30 days behind it.

| split | days | rows | fraud rate |
| --- | --- | --- | --- |
{splits}

## Metrics on the held-out test days
- ROC AUC: **{m["test_auc"]:.4f}**; average precision (AUPRC): **{m["test_auprc"]:.4f}**
  (a random ranking would score {m["test_fraud_rate"]:.4f}).
- At the threshold {model.threshold:.4g}: precision {at["precision"]:.3f}, recall
  {at["recall"]:.3f}, F1 {at["f1"]:.3f}, {at["flagged_share"]:.2%} of payments flagged
  ({m["test_fraud_rows"]:,} fraudulent of {m["test_rows"]:,}).

## Limitations
- Trained and evaluated on synthetic data whose fraud patterns were written for the features
  it uses; the metrics say the pipeline works end to end, not how it would do on real fraud.
  Retrain on labelled real payments (for instance the Sparkov set, which `read_payments`
  loads as is) before trusting scores.
- Times are UTC: the data has no local time zone, so `is_night` is night in UTC, not the
  cardholder's.
- Only what one account did recently: no device, IP, merchant risk or network features;
  a fraudster who stays within the account's habits is invisible to it.
- Linear: interactions (a large amount *and* a new merchant *at night*) only add up.
- Some coefficients describe the generator rather than fraud: `count_7d` is negative because
  incidents strike accounts at random, so a payment of a quiet account is more often fraud.
- Accounts and merchants are matched by 64-bit hash in the features (see
  `core/fraud_features.py`); a collision is astronomically unlikely but not impossible.
- Features need the 30 days before each payment; with less history, z-scores, velocities and
  first-time flags are computed from what there is and look more alarming than they are.
"""


_MEANINGS = {
    "log_amount": "ln(1 + amount)",
    "amount_zscore_30d": "amount vs the account's amounts of the 30 days before (z-score)",
    "count_1h": "the account's payments in the hour before",
    "sum_1h": "their amount (USD)",
    "count_24h": "the account's payments in the 24 hours before",
    "sum_24h": "their amount (USD)",
    "count_7d": "the account's payments in the 7 days before",
    "sum_7d": "their amount (USD)",
    "first_time_merchant": "1 if the account has not paid this merchant in 30 days",
    "is_night": "1 if the UTC hour is 22-05",
    "distance_km": "km between the cardholder and the merchant",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    args = parser.parse_args(argv)
    model, info = train()
    outputs = {MODEL_PATH: model_json(model), CARD_PATH: model_card(model)}
    if args.check:
        stale = [str(p) for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        if stale:
            print(f"out of date: {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    m = model.metrics
    print(
        f"{model.model_version}: test AUC {m['test_auc']:.4f}, AUPRC {m['test_auprc']:.4f}, "
        f"threshold {model.threshold:.4g}, positives {info['positives']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
