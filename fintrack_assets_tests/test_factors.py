"""Factor exposures (core/factors.py) against numpy least squares and a textbook ridge."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from fintrack_assets.core.calendar import sessions_between
from fintrack_assets.core.factors import EXPOSURES_SCHEMA, factor_exposures, factor_returns

D = dt.date
SESSIONS = sessions_between(D(2023, 1, 3), D(2025, 1, 1))
FACTORS = ["XLK", "market", "rates"]  # sorted, as the output lists them


def make_factors(days: int, seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0004, 0.011, days)
    return {
        "market": market,
        "rates": -0.2 * market + rng.normal(0, 0.009, days),
        "XLK": 1.2 * market + rng.normal(0, 0.006, days),
    }


def factor_frame(factors: dict[str, np.ndarray]) -> pl.DataFrame:
    rows = [
        {"date": SESSIONS[i], "factor": name, "return": None if np.isnan(x) else float(x)}
        for name, values in factors.items()
        for i, x in enumerate(values)
    ]
    return pl.DataFrame(rows, schema={"date": pl.Date, "factor": pl.String, "return": pl.Float64})


def portfolio_frame(series: dict[str, tuple[int, np.ndarray]]) -> pl.DataFrame:
    """{portfolio: (first session index, returns from there; NaN = missing)}."""
    rows = [
        {
            "date": SESSIONS[start + i],
            "portfolio_id": p,
            "daily_return": None if np.isnan(y) else float(y),
        }
        for p, (start, values) in series.items()
        for i, y in enumerate(values)
    ]
    schema = {"date": pl.Date, "portfolio_id": pl.String, "daily_return": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def exposures_on(frame: pl.DataFrame, day: D, portfolio: str = "P1") -> dict[str, dict]:
    rows = frame.filter((pl.col("date") == day) & (pl.col("portfolio_id") == portfolio))
    return {r["factor"]: r for r in rows.rows(named=True)}


def reference(y: np.ndarray, x: np.ndarray, ridge_alpha: float) -> tuple:
    """Univariate betas, ridge coefficients (standardised factors, centred y) and R^2 on the
    rows where y and every factor are present."""
    keep = ~np.isnan(y) & ~np.isnan(x).any(axis=1)
    y, x = y[keep], x[keep]
    n = len(y)
    betas = [np.cov(y, x[:, j])[0, 1] / np.var(x[:, j], ddof=1) for j in range(x.shape[1])]
    sd = x.std(axis=0, ddof=1)
    z = (x - x.mean(axis=0)) / sd
    yc = y - y.mean()
    b = np.linalg.solve(z.T @ z / (n - 1) + ridge_alpha * np.eye(x.shape[1]), z.T @ yc / (n - 1))
    r_squared = 1 - ((yc - z @ b) ** 2).sum() / (yc**2).sum()
    return np.array(betas), b / sd, r_squared


def test_factor_returns_names_the_etfs() -> None:
    returns = pl.DataFrame(
        {
            "date": [SESSIONS[0]] * 4,
            "symbol": ["SPY", "TLT", "XLK", "AAPL"],
            "return": [0.01, -0.02, 0.03, 0.04],
        }
    )
    got = factor_returns(returns).sort("factor")
    assert got.rows() == [
        (SESSIONS[0], "XLK", 0.03),
        (SESSIONS[0], "market", 0.01),
        (SESSIONS[0], "rates", -0.02),
    ]


def test_without_penalty_the_fit_is_ordinary_least_squares() -> None:
    factors = make_factors(300)
    rng = np.random.default_rng(5)
    y = 0.9 * factors["market"] + 0.3 * factors["rates"] + rng.normal(0, 0.004, 300)
    y[0] = np.nan
    got = factor_exposures(portfolio_frame({"P1": (0, y)}), factor_frame(factors), ridge_alpha=0.0)
    x = np.column_stack([factors[f] for f in FACTORS])
    for i in (30, 150, 299):
        rows = exposures_on(got, SESSIONS[i])
        lo = max(0, i - 251)
        ys, xs = y[lo : i + 1], x[lo : i + 1]
        keep = ~np.isnan(ys)
        design = np.column_stack([np.ones(keep.sum()), xs[keep]])
        ols, *_ = np.linalg.lstsq(design, ys[keep], rcond=None)
        residual = ys[keep] - design @ ols
        r2 = 1 - (residual**2).sum() / ((ys[keep] - ys[keep].mean()) ** 2).sum()
        for j, name in enumerate(FACTORS):
            assert rows[name]["ridge_coef"] == pytest.approx(ols[j + 1], rel=1e-9, abs=1e-12)
            assert rows[name]["r_squared"] == pytest.approx(r2, rel=1e-9)
            cov = np.cov(ys[keep], xs[keep, j])
            assert rows[name]["beta"] == pytest.approx(cov[0, 1] / cov[1, 1], rel=1e-9)


def test_an_exact_combination_is_recovered() -> None:
    factors = make_factors(60)
    y = 0.5 * factors["market"] + 0.3 * factors["rates"]
    got = factor_exposures(portfolio_frame({"P1": (0, y)}), factor_frame(factors), ridge_alpha=0.0)
    rows = exposures_on(got, SESSIONS[59])
    assert rows["market"]["ridge_coef"] == pytest.approx(0.5, abs=1e-9)
    assert rows["rates"]["ridge_coef"] == pytest.approx(0.3, abs=1e-9)
    assert rows["XLK"]["ridge_coef"] == pytest.approx(0.0, abs=1e-9)
    assert rows["market"]["r_squared"] == pytest.approx(1.0, abs=1e-9)


def test_a_large_penalty_shrinks_the_fit_to_zero_but_not_the_betas() -> None:
    factors = make_factors(120)
    y = 0.8 * factors["market"] + np.random.default_rng(2).normal(0, 0.003, 120)
    frame, ff = portfolio_frame({"P1": (0, y)}), factor_frame(factors)
    mild = exposures_on(factor_exposures(frame, ff, ridge_alpha=0.0), SESSIONS[119])
    strong = exposures_on(factor_exposures(frame, ff, ridge_alpha=1e8), SESSIONS[119])
    for name in FACTORS:
        assert abs(strong[name]["ridge_coef"]) < 1e-6 * max(1.0, abs(mild[name]["ridge_coef"]))
        assert strong[name]["beta"] == mild[name]["beta"]
    assert strong["market"]["r_squared"] == pytest.approx(0.0, abs=1e-6)


def test_every_row_matches_a_textbook_ridge() -> None:
    factors = make_factors(300)
    factors["rates"][100:105] = np.nan  # a gap in one factor: those dates drop out
    rng = np.random.default_rng(9)
    y1 = 0.7 * factors["market"] + rng.normal(0, 0.005, 300)
    y1[[0, 200]] = np.nan
    y2 = -0.4 * factors["rates"][50:] + rng.normal(0, 0.005, 250)
    y2[0] = np.nan
    frame = portfolio_frame({"P1": (0, y1), "P2": (50, y2)})
    got = factor_exposures(frame, factor_frame(factors), window=100, ridge_alpha=0.5)
    assert got.columns == list(EXPOSURES_SCHEMA)
    assert got.height == 3 * frame.height
    x = np.column_stack([factors[f] for f in FACTORS])
    checked = 0
    for p, start, y in (("P1", 0, y1), ("P2", 50, y2)):
        for i in range(start, 300):
            rows = exposures_on(got, SESSIONS[i], p)
            lo = max(start, i - 99)
            ys, xs = y[lo - start : i - start + 1], x[lo : i + 1]
            usable = (~np.isnan(ys) & ~np.isnan(xs).any(axis=1)).sum()
            if usable < 20:
                assert all(r["beta"] is None and r["r_squared"] is None for r in rows.values())
                continue
            betas, coefs, r2 = reference(ys, xs, 0.5)
            for j, name in enumerate(FACTORS):
                assert rows[name]["beta"] == pytest.approx(betas[j], rel=1e-9, abs=1e-12)
                assert rows[name]["ridge_coef"] == pytest.approx(coefs[j], rel=1e-9, abs=1e-12)
                assert rows[name]["r_squared"] == pytest.approx(r2, rel=1e-9, abs=1e-12)
            checked += 1
    assert checked > 400


def test_a_factor_with_too_little_data_is_left_out() -> None:
    factors = make_factors(80)
    factors["XLC"] = np.full(80, np.nan)
    factors["XLC"][-15:] = np.random.default_rng(1).normal(0, 0.01, 15)  # 15 < 20 returns
    y = 0.6 * factors["market"] + np.random.default_rng(4).normal(0, 0.004, 80)
    got = factor_exposures(portfolio_frame({"P1": (0, y)}), factor_frame(factors))
    rows = exposures_on(got, SESSIONS[79])
    assert rows["XLC"]["beta"] is None
    assert rows["XLC"]["ridge_coef"] is None
    x = np.column_stack([factors[f] for f in FACTORS])
    betas, coefs, r2 = reference(y, x, 0.1)  # on all 80 dates, as if XLC did not exist
    for j, name in enumerate(FACTORS):
        assert rows[name]["ridge_coef"] == pytest.approx(coefs[j], rel=1e-9)
        assert rows[name]["beta"] == pytest.approx(betas[j], rel=1e-9)
    assert rows["market"]["r_squared"] == pytest.approx(r2, rel=1e-9)


def test_fewer_than_20_observations_give_nulls() -> None:
    factors = make_factors(30)
    y = factors["market"].copy()
    y[0] = np.nan
    got = factor_exposures(portfolio_frame({"P1": (0, y)}), factor_frame(factors))
    assert all(r["beta"] is None for r in exposures_on(got, SESSIONS[19]).values())
    assert all(r["beta"] is not None for r in exposures_on(got, SESSIONS[20]).values())
    assert exposures_on(got, SESSIONS[20])["market"]["beta"] == pytest.approx(1.0)


def test_a_range_equals_its_dates_computed_one_by_one() -> None:
    factors = make_factors(320)
    rng = np.random.default_rng(12)
    series = {
        "P1": (0, 0.9 * factors["market"] + rng.normal(0, 0.005, 320)),
        "P2": (100, 0.2 * factors["XLK"][100:] + rng.normal(0, 0.005, 220)),
        "P3": (300, rng.normal(0, 0.01, 20)),
    }
    frame, ff = portfolio_frame(series), factor_frame(factors)
    whole = factor_exposures(frame, ff)
    for i in (150, 290, 319):
        day = SESSIONS[i]
        history = frame.filter(pl.col("date").is_between(SESSIONS[max(0, i - 260)], day))
        alone = factor_exposures(history, ff.filter(pl.col("date") <= day), since=day)
        expected = whole.filter(pl.col("date") == day)
        assert alone.sort("portfolio_id", "factor").equals(
            expected.sort("portfolio_id", "factor"), null_equal=True
        )


def test_results_do_not_depend_on_how_rows_are_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    import fintrack_assets.core.factors as factors

    values = make_factors(150)
    rng = np.random.default_rng(3)
    frame = portfolio_frame(
        {
            "P1": (0, 0.9 * values["market"] + rng.normal(0, 0.005, 150)),
            "P2": (40, rng.normal(0, 0.01, 110)),
            "P3": (10, 0.3 * values["rates"][10:] + rng.normal(0, 0.005, 140)),
        }
    )
    blocked = factor_exposures(frame, factor_frame(values))
    monkeypatch.setattr(factors, "CHUNK_ELEMENTS", 1)  # one (portfolio, date) per block
    assert factor_exposures(frame, factor_frame(values)).equals(blocked, null_equal=True)
