"""The baselines a user of the data would try first, fitted on the design's own split.

A design shows them beside its networks so that "the network is better" is a claim against
something, not a number on its own:

- tables and low-dimensional points (classification, regression, click-through rate scored by
  AUROC on the positive class's probability): scikit-learn's HistGradientBoosting (gradient-boosted
  trees are the method to beat on small tables; Grinsztajn et al. 2022, "Why do tree-based models
  still outperform deep learning on tabular data?");
- forecasting: seasonal naive (repeat the last season) and exponential smoothing (statsmodels'
  Holt-Winters, fitted on each window's history, as a forecaster would);
- series regression (a value per series, as Tecator's fat content from a spectrum): the same
  gradient boosting on the series' values flattened;
- series classification: MiniRocket (Dempster et al. 2021) from sktime, which needs numba; when
  it is not installed the design says so rather than leaving the row out silently;
- text classification: TF-IDF of token 1- to 3-grams and logistic regression;
- images: multinomial logistic regression on the pixels (small images only).

Every baseline is scored with the task's selection metric (accuracy, or MAE in the units the
network's metrics use: standardised targets stay standardised) on the validation and the test split.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split

log = logging.getLogger("archlab.advise")

#: largest image input (pixels x channels) the logistic-regression baseline is fitted on
MAX_PIXELS = 4096
#: most windows exponential smoothing is fitted on per split (one fit per window)
MAX_ETS_WINDOWS = 200


@dataclass
class Baseline:
    """One baseline on the design's split.

    Attributes:
        name: what it is (``"gradient boosting (HistGradientBoosting)"``).
        metric: the selection metric it is scored on, without split prefix (``accuracy``, ``mae``).
        val: its value on the validation split (None without one).
        test: its value on the test split (None without one).
        seconds: fitting and scoring time.
        note: why it is missing, when it could not be fitted (``val`` and ``test`` are then None).
    """

    name: str
    metric: str
    val: float | None = None
    test: float | None = None
    seconds: float = 0.0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _arrays(split: Split | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(inputs, targets) of a split; several tabular inputs (dense features beside categorical
    ids, as CTR data comes) side by side as one feature matrix."""
    if split is None or split.target is None or not split.indexable:
        return None
    if len(split.inputs) == 1:
        return split.inputs[0].numpy(), split.target.numpy()
    if any(t.ndim != 2 for t in split.inputs):
        return None
    return np.concatenate([t.numpy().astype(np.float64) for t in split.inputs], axis=1), split.target.numpy()


def _score(metric: str, pred: np.ndarray, y: np.ndarray) -> float:
    if metric == "accuracy":
        return float((pred.reshape(-1) == y.reshape(-1)).mean())
    if metric == "auroc":  # ``pred`` is the positive class's probability
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(y.reshape(-1), pred.reshape(-1)))
    return float(np.abs(pred.reshape(len(y), -1) - y.reshape(len(y), -1)).mean())


def _fit_predict(name: str, metric: str, bundle: DataBundle, make: Any, features: Any = None) -> Baseline:
    """Fit ``make()`` on the train split's (featurised) arrays; score it on val and test."""
    t0 = time.perf_counter()
    feat = features or (lambda x: x.reshape(len(x), -1))
    train = _arrays(bundle.train)
    if train is None:
        raise ValueError("the train split has no single input array with targets")
    x, y = train
    y_fit = y.reshape(-1) if metric in ("accuracy", "auroc") else y.reshape(len(y), -1)[:, 0]
    model = make().fit(feat(x), y_fit)
    predict = (lambda a: model.predict_proba(a)[:, 1]) if metric == "auroc" else model.predict
    out = Baseline(name, metric)
    for split_name in ("val", "test"):
        arrays = _arrays(getattr(bundle, split_name))
        if arrays is not None:
            setattr(out, split_name, _score(metric, predict(feat(arrays[0])), arrays[1]))
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def _gradient_boosting(bundle: DataBundle, task: str) -> Baseline:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    metric = {"classification": "accuracy", "ctr": "auroc"}.get(task, "mae")
    return _fit_predict("gradient boosting (HistGradientBoosting)", metric, bundle, lambda: cls(random_state=0))


def _logistic_pixels(bundle: DataBundle) -> Baseline:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def make() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))

    return _fit_predict("logistic regression on pixels", "accuracy", bundle, make)


def _tfidf_logistic(bundle: DataBundle) -> Baseline:
    """TF-IDF of token n-grams (1 to 3; characters for a character-level tokenizer) and logistic
    regression: the text classifier to beat before any network."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pad = bundle.info.get("pad_id")

    def as_text(x: np.ndarray) -> list[str]:  # token ids as words, padding left out
        return [" ".join(str(int(t)) for t in row if t != pad) for row in x]

    def make() -> Any:
        words = TfidfVectorizer(token_pattern=r"\S+", ngram_range=(1, 3), sublinear_tf=True, max_features=50_000)
        return make_pipeline(words, LogisticRegression(max_iter=1000))

    return _fit_predict("TF-IDF (1-3-grams) + logistic regression", "accuracy", bundle, make, as_text)


def _minirocket(bundle: DataBundle) -> Baseline:
    try:
        import numba  # noqa: F401 - sktime's MiniRocket compiles its kernels with numba
        from sklearn.linear_model import RidgeClassifierCV
        from sktime.transformations.panel.rocket import MiniRocketMultivariate
    except ImportError as exc:
        return Baseline(
            "MiniRocket (sktime)", "accuracy", note=f"not installed ({exc.name}): pip install 'archlab[rocket]'"
        )

    class MiniRocketRidge:  # sktime's transformer does not nest in a scikit-learn pipeline
        def fit(self, x: np.ndarray, y: np.ndarray) -> MiniRocketRidge:
            self.rocket = MiniRocketMultivariate(random_state=0)
            self.ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))
            self.ridge.fit(self.rocket.fit_transform(x), y)
            return self

        def predict(self, x: np.ndarray) -> np.ndarray:
            return self.ridge.predict(self.rocket.transform(x))

    def panel(x: np.ndarray) -> np.ndarray:  # (N, C, L) or (N, L) -> sktime's numpy3D (N, C, L)
        return x[:, None, :] if x.ndim == 2 else x

    return _fit_predict("MiniRocket + ridge (sktime)", "accuracy", bundle, MiniRocketRidge, panel)


def _forecast_windows(split: Split | None) -> tuple[np.ndarray, np.ndarray] | None:
    arrays = _arrays(split)
    if arrays is None:
        return None
    x, y = arrays
    x = x[..., 0] if x.ndim == 3 else x  # (N, L, 1) -> (N, L): the target channel
    return x.astype(np.float64), y.reshape(len(y), -1).astype(np.float64)


def _seasonal_naive(bundle: DataBundle) -> Baseline:
    t0 = time.perf_counter()
    season = int(bundle.info.get("season") or 1)
    out = Baseline(f"seasonal naive (season {season})", "mae")
    for split_name in ("val", "test"):
        arrays = _forecast_windows(getattr(bundle, split_name))
        if arrays is None:
            continue
        x, y = arrays
        s = season if x.shape[1] >= season else 1
        idx = x.shape[1] - s + np.arange(y.shape[1]) % s
        setattr(out, split_name, float(np.abs(x[:, idx] - y).mean()))
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def _exponential_smoothing(bundle: DataBundle) -> Baseline:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    t0 = time.perf_counter()
    season = int(bundle.info.get("season") or 0)
    out = Baseline("exponential smoothing (Holt-Winters)", "mae")
    for split_name in ("val", "test"):
        arrays = _forecast_windows(getattr(bundle, split_name))
        if arrays is None:
            continue
        x, y = arrays
        if len(x) > MAX_ETS_WINDOWS:  # an evenly spaced subset: one fit per window
            keep = np.linspace(0, len(x) - 1, MAX_ETS_WINDOWS).round().astype(int)
            x, y = x[keep], y[keep]
            out.note = f"fitted on {MAX_ETS_WINDOWS} evenly spaced windows of each split"
        seasonal = "add" if season > 1 and x.shape[1] >= 2 * season else None
        errors = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes on short windows
            for window, target in zip(x, y):
                model = ExponentialSmoothing(
                    window, trend="add", damped_trend=True, seasonal=seasonal, seasonal_periods=season or None
                ).fit()
                errors.append(np.abs(model.forecast(len(target)) - target).mean())
        setattr(out, split_name, float(np.mean(errors)))
    out.name += f" (season {season})" if season > 1 else ""
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def fit_baselines(bundle: DataBundle, task: str) -> list[Baseline]:
    """The baselines for this data and task (see the module docstring), each fitted on the train
    split and scored on val and test. A baseline that fails is kept with its ``note``."""
    makers: list[tuple[str, Any]] = []
    x = _arrays(bundle.train)
    if task == "forecasting":
        makers = [("seasonal naive", _seasonal_naive), ("exponential smoothing", _exponential_smoothing)]
    elif x is not None and task == "ctr":
        makers = [("gradient boosting", lambda b: _gradient_boosting(b, task))]
    elif x is not None and task in ("classification", "regression"):
        if bundle.modality in ("tabular", "points") or (task == "regression" and x[0].ndim <= 3):
            makers = [("gradient boosting", lambda b: _gradient_boosting(b, task))]  # series: on the flat values
        elif bundle.modality in ("time_series", "signal") and task == "classification":
            makers = [("MiniRocket", _minirocket)]
        elif bundle.modality == "text" and task == "classification" and x[0].ndim == 2:
            makers = [("TF-IDF", _tfidf_logistic)]
        elif bundle.modality == "image" and task == "classification" and x[0][0].size <= MAX_PIXELS:
            makers = [("logistic regression", _logistic_pixels)]
    out = []
    threads = torch.get_num_threads()
    for name, make in makers:
        try:
            out.append(make(bundle))
        except Exception as exc:  # a baseline never stops a design: the row says why it is missing
            log.warning("design: the %s baseline failed: %s", name, exc)
            metric = {"classification": "accuracy", "ctr": "auroc"}.get(task, "mae")
            out.append(Baseline(name, metric, note=f"failed: {exc}"))
        finally:  # numba's OpenMP layer (MiniRocket) resets the process's thread count; the networks keep theirs
            torch.set_num_threads(threads)
    return out
