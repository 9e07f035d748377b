"""The architecture advisor: read the data and the constraints, rank registry presets, with reasons.

``recommend("digits")`` inspects the data (:mod:`archlab.advise.facts`), fires the rules of
:mod:`archlab.advise.rules`, takes every registry preset that the capability vocabulary says trains
on this modality and task, fits each to the data, sizes it to the budgets (:func:`autosize`) and
ranks them by the rules' scores. Each candidate carries the ids of the rules behind it, its
trade-offs, its parameters and FLOPs and whether it fits every budget.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from archlab.advise import rules as R
from archlab.advise.autosize import SCHEMA_VERSION, autosize, given_budgets
from archlab.advise.facts import DataFacts, facts_from_args, fit_to_data, inspect_data, load_bundle
from archlab.advise.reads import fit_layout, forward_check, is_signal
from archlab.display import NotebookDisplay
from archlab.errors import ArchlabError, ConfigError

log = logging.getLogger(__name__)

_RNN_TRACE_STEPS = 64

#: one line of strengths / costs per family (the usual textbook trade-offs).
TRADEOFFS = {
    "mlp": "fast and simple; no notion of space, order or edges",
    "cnn": "cheap, strong spatial bias; receptive field grows only with depth and pooling",
    "resnet": "trains deep thanks to skips; more compute than a plain CNN",
    "vit": "global attention, scales with data; weak bias, wants pretraining or lots of data",
    "transformer": "global context, parallel training; cost quadratic in sequence length",
    "rnn": "constant cost per step, streams; slow to train, forgets over long spans",
    "fasttext": "seconds per epoch on a CPU, local order only (n-grams); no long-range context",
    "tcn": "parallel training, causal, long receptive field; fixed context window",
    "ssm": "linear-time long context, streams; newer and less tuned",
    "gnn": "uses the edges; over-smooths when deep",
    "unet": "sharp per-pixel output via skips; memory grows with resolution",
    "recsys": "embeds sparse IDs; embedding tables dominate the size",
    "siamese": "learns a metric space; needs pairs or augmentations",
    "diffusion": "best sample fidelity, stable training; slow sampling",
    "gan": "fast sampling; unstable training, mode collapse",
    "vae": "likelihood bound and a smooth latent space; blurrier samples",
    "flow": "exact likelihood; many layers for high dimensions",
    "autoencoder": "compression and anomaly scores; no sampling",
}

#: the usual alternatives to the first pick, per modality and task.
ALTERNATIVES = {
    ("tabular", "ctr"): "plain MLP",
    ("tabular", "classification"): "gradient-boosted trees",
    ("tabular", "regression"): "gradient-boosted trees",
    ("image", "classification"): "ConvNeXt, EfficientNet",
    ("image", "segmentation"): "FPN, Mask R-CNN",
    ("text", "classification"): "BiLSTM+CRF (small)",
    ("text", "tagging"): "BiLSTM+CRF",
    ("text", "language_modeling"): "RNN-LM (on-device)",
    ("text", "seq2seq"): "CTC+attention hybrids",
    ("time_series", "forecasting"): "S4/SSM, classical (seasonal naive, ARIMA)",
    ("time_series", "classification"): "S4/SSM, classical",
    ("graph", "node_classification"): "Graph Transformers",
    ("graph", "graph_classification"): "Graph Transformers",
    ("image", "contrastive"): "Triplet, ArcFace",
    ("image", "diffusion"): "GANs, autoregressive",
    ("image", "gan"): "Diffusion",
}


@dataclass
class Context:
    """What the rules read: the data facts and the user's constraints."""

    facts: DataFacts
    batch: int = 1
    batch_given: bool = False
    latency_ms: float | None = None
    budgets: dict[str, Any] = field(default_factory=dict)
    streaming: bool = False
    pretrained_ok: bool = True

    @property
    def task(self) -> str | None:
        return self.facts.task


@dataclass
class Advice:
    """A data-driven warning and the fix archlab would apply."""

    rule: str
    message: str
    fix: str | None = None
    models: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "fix": self.fix, "models": self.models}


@dataclass
class RecCandidate:
    """One ranked preset."""

    rank: int
    name: str
    family: str
    score: float
    reasons: list[str]
    tradeoffs: str
    overrides: dict[str, Any]
    params: int | None
    flops: int | None
    latency_ms: float | None
    fits_budget: bool
    budget_note: str = ""
    notes: list[str] = field(default_factory=list)
    #: loader options the candidate needs on top of the user's (``{"layout": "sequence"}`` for an
    #: RNN on a signal dataset loaded as (N, C, L)); pass them to ``archlab.data.load`` / ``fit``.
    data_options: dict[str, Any] = field(default_factory=dict)

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "rank",
                "name",
                "family",
                "score",
                "reasons",
                "tradeoffs",
                "overrides",
                "params",
                "flops",
                "latency_ms",
                "fits_budget",
                "budget_note",
                "notes",
                "data_options",
            )
        }


@dataclass
class Recommendation(NotebookDisplay):
    """The advisor's answer: facts read, rules fired, ranked candidates, warnings, baselines."""

    facts: DataFacts
    budgets: dict[str, Any]
    rules_fired: list[str]
    candidates: list[RecCandidate]
    warnings: list[Advice]
    alternatives: str | None = None
    baseline: dict[str, Any] | None = None
    latency_method: str | None = None

    @property
    def top(self) -> RecCandidate | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "facts": self.facts.to_dict(),
            "budgets": self.budgets,
            "rules_fired": self.rules_fired,
            "rules": {rid: R.RULES_BY_ID[rid].to_dict() for rid in self.rules_fired if rid in R.RULES_BY_ID},
            "candidates": [c.to_dict() for c in self.candidates],
            "warnings": [w.to_dict() for w in self.warnings],
            "alternatives": self.alternatives,
            "baseline": self.baseline,
            "latency_method": self.latency_method,
        }


# -- per-candidate checks ---------------------------------------------------------------------------


def tcn_receptive_field(channels: list[int], kernel_size: int) -> int:
    """Receptive field of archlab's TCN: two dilated convolutions per level, dilation 2**i."""
    return 1 + 2 * (kernel_size - 1) * sum(2**i for i in range(len(channels)))


MAX_TCN_LEVELS = 12  # the fix for a short receptive field adds levels up to this many


def deepen_tcn(cfg: dict[str, Any], facts: DataFacts) -> list[int] | None:
    """The fix of rule ``receptive-field-short``: a TCN ``channels`` list long enough to see
    ``max(season, seq_len)`` steps (the last width repeated), or None when no level is needed."""
    channels, k = list(cfg.get("channels") or []), int(cfg.get("kernel_size", 3))
    need = max(facts.season or 0, facts.seq_len or 0)
    if not channels or not need or tcn_receptive_field(channels, k) >= need:
        return None
    while tcn_receptive_field(channels, k) < need and len(channels) < MAX_TCN_LEVELS:
        channels.append(channels[-1])
    return channels


def tcn_pooling(cfg: dict[str, Any], facts: DataFacts, streaming: bool) -> str | None:
    """The fix of rule ``tcn-classify-pool``: ``"mean"`` for a causal TCN classifier that reads only
    its last step on whole-sequence classification (not streaming), or None when nothing changes.

    The last step's causal features weight the latest inputs; a pattern early in the sequence (a
    shifted MNIST-1D digit) reaches it only through the sparse dilated taps. Measured on mnist1d
    (tcn_classifier, 800 steps, lr 1e-3): last step 40.0% test accuracy, mean over steps 82.0%.
    """
    if streaming or facts.task != "classification" or cfg.get("head") != "classifier":
        return None
    return "mean" if cfg.get("pooling") == "last" else None


def _candidate_checks(
    entry, cfg: dict[str, Any], facts: DataFacts, fired_ids: set[str]
) -> list[tuple[str, str, float]]:
    """(rule id, note, score delta) for checks that need the candidate's config."""
    out = []
    if entry.family == "tcn" and cfg.get("channels"):
        rf = tcn_receptive_field(cfg["channels"], int(cfg.get("kernel_size", 3)))
        need = max(facts.season or 0, facts.seq_len or 0)
        if need and rf < need:
            out.append(("receptive-field-short", f"receptive field {rf} < {need} steps (season/window)", -1.0))
    pos, max_len = entry.defaults.get("pos", cfg.get("pos")), entry.defaults.get("max_seq_len")
    if entry.family in ("transformer",) and pos == "learned" and max_len and facts.seq_len and facts.seq_len > max_len:
        out.append(("positions-too-short", f"learned positions {max_len} < sequence {facts.seq_len}", -1.0))
    if "tiny-batch-batchnorm" in fired_ids and cfg.get("norm") == "batch":
        out.append(("tiny-batch-batchnorm", "uses BatchNorm: switch norm to group/layer", -0.5))
    return out


def capacity_check(params: int | None, n_samples: int | None) -> tuple[float, str | None]:
    """Rule ``capacity-vs-data``: (score delta, note or None) for a preset of ``params`` on ``n_samples``.

    A soft pull towards a moderate size, ``target = max(PARAMS_FLOOR, PARAMS_PER_SAMPLE * n)``:
    -0.25 per decade away from it (so it only reorders presets the other rules rate alike, whose
    scores differ by whole points), and a further -1 with a note when the model is more than
    ``OVERSIZED`` times that size (1,000 parameters per sample above the floor).
    """
    if not params or not n_samples:
        return 0.0, None
    target = max(R.PARAMS_FLOOR, R.PARAMS_PER_SAMPLE * n_samples)
    delta = -0.25 * abs(math.log10(params / target))
    if params > R.OVERSIZED * target:
        per_sample = params / n_samples
        note = (
            f"{params:,} parameters for {n_samples:,} training samples ({per_sample:,.0f} per sample; "
            f"a moderate size is {target:,})"
        )
        return delta - 1.0, note
    return delta, None


def hgb_baseline(bundle, task: str) -> dict[str, Any] | None:
    """A scikit-learn HistGradientBoosting score on the bundle's own split (None without sklearn)."""
    try:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    except ImportError:
        return None
    split = bundle.test if bundle.test is not None else bundle.val
    if split is None or bundle.train.target is None or len(bundle.train.inputs) != 1:
        return None
    x, y = bundle.train.inputs[0].numpy(), bundle.train.target.numpy()
    xt, yt = split.inputs[0].numpy(), split.target.numpy()
    if x.ndim != 2:
        return None
    if task == "classification":
        model = HistGradientBoostingClassifier(random_state=0).fit(x, y)
        metric, value = "accuracy", float((model.predict(xt) == yt).mean())
    else:
        model = HistGradientBoostingRegressor(random_state=0).fit(x, y.reshape(len(y), -1)[:, 0])
        metric = "mae"
        value = float(abs(model.predict(xt) - yt.reshape(len(yt), -1)[:, 0]).mean())
    return {
        "model": "sklearn HistGradientBoosting",
        "metric": metric,
        "value": value,
        "split": "test" if bundle.test is not None else "val",
    }


# -- the advisor ------------------------------------------------------------------------------------


def _candidates(modality: str, task: str | None) -> list[str]:
    from archlab.registry import list_models

    return list_models(modality=modality, task=task) if task else list_models(modality=modality)


def recommend(
    data: Any = None,
    *,
    modality: str | None = None,
    task: str | None = None,
    input_shape: Any = None,
    n_samples: int | None = None,
    num_classes: int | None = None,
    seq_len: int | None = None,
    latency_ms: float | None = None,
    batch: int | None = None,
    params_max: int | None = None,
    flops_max: int | None = None,
    memory_mb: float | None = None,
    size_mb: float | None = None,
    streaming: bool = False,
    pretrained_ok: bool = True,
    top: int = 5,
    data_options: dict[str, Any] | None = None,
) -> Recommendation:
    """Rank registry presets for this data and these constraints, with reasons.

    Args:
        data: a DataBundle, a bundled name or a user's path; inspected for the facts below.
        modality, task, input_shape, n_samples, num_classes, seq_len: the facts when there is no
            data (or to override what the data says; ``task`` picks among a dataset's tasks).
        latency_ms: most ms per forward at ``batch`` on this CPU (candidates are measured).
        batch: the batch size for latency / FLOPs (default 1); given below 8 it also fires the
            BatchNorm rule.
        params_max, flops_max, memory_mb: budgets every candidate is sized to (see :func:`autosize`).
        size_mb: most MB of fp32 weights (a params budget of ``size_mb * 1e6 / 4``).
        streaming: the model must run step by step (streaming / on-device).
        pretrained_ok: whether pretrained weights may be used.
        top: how many candidates to return.
        data_options: loader options when ``data`` is a name or path (``archlab.data.load``), e.g.
            ``{"fill": "interpolate"}`` for ``co2`` or ``{"time": "date", "target": "units"}`` for
            a user's series CSV (a CSV is read as a series with ``task="forecasting"`` too).

    Raises:
        ConfigError / DataError: unknown words, no data and no modality, or no preset for the pair.
    """
    if top < 1:
        raise ConfigError(f"recommend: top must be >= 1; got {top}")
    bundle = load_bundle(data, task, data_options) if data is not None else None
    facts = _facts(bundle, modality, task, input_shape, n_samples, num_classes, seq_len)
    budgets = _budget_dict(params_max, flops_max, latency_ms, memory_mb, size_mb)
    ctx = Context(
        facts,
        batch=batch or 1,
        batch_given=batch is not None,
        latency_ms=latency_ms,
        budgets=budgets,
        streaming=streaming,
        pretrained_ok=pretrained_ok,
    )
    fired = R.fired(ctx)
    fired_ids = {r.id for r in fired}
    ranking = _rank(_preset_names(facts), bundle, facts, fired, budgets, ctx)
    rows = _shown_rows(ranking.rows, top, budgets, ctx.batch)
    return Recommendation(
        facts=facts,
        budgets=budgets,
        rules_fired=[r.id for r in fired] + [rid for rid in ranking.findings if rid not in fired_ids],
        candidates=rows,
        warnings=_warnings(fired, ranking.findings, rows),
        alternatives=ALTERNATIVES.get((facts.modality, facts.task)),
        baseline=_baseline(fired_ids, bundle, facts.task),
        latency_method=ranking.latency_method,
    )


def _facts(bundle, modality, task, input_shape, n_samples, num_classes, seq_len) -> DataFacts:
    """The data's facts (counts given by the caller override the data's), or the caller's alone."""
    if bundle is None:
        return facts_from_args(modality, task, input_shape, n_samples, num_classes, seq_len)
    facts = inspect_data(bundle, task)
    for k, v in dict(n_samples=n_samples, num_classes=num_classes, seq_len=seq_len).items():
        if v is not None:
            setattr(facts, k, v)
    return facts


def _budget_dict(params_max, flops_max, latency_ms, memory_mb, size_mb) -> dict[str, Any]:
    """The budgets given; ``size_mb`` of fp32 weights caps ``params_max`` at ``size_mb * 1e6 / 4``."""
    if size_mb is not None:
        cap = int(size_mb * 1e6 / 4)
        params_max = min(params_max, cap) if params_max else cap
    return given_budgets(params_max, flops_max, latency_ms, memory_mb)


def _preset_names(facts: DataFacts) -> list[str]:
    """The registry presets that train on the facts' modality and task (ConfigError when none)."""
    names = _candidates(facts.modality, facts.task)
    if not names:
        raise ConfigError(
            f"no registered model trains on {facts.modality} for task {facts.task!r} "
            f"(see `archlab models --modality {facts.modality}`)"
        )
    return names


def _shown_rows(rows: list[RecCandidate], top: int, budgets: dict[str, Any], batch: int) -> list[RecCandidate]:
    """The ``top`` rows, families mixed (:func:`_diverse`), numbered, with FLOPs where sizing
    did not measure them."""
    rows = _diverse(rows)[:top]
    for i, row in enumerate(rows, 1):
        row.rank = i
        if row.flops is None and not budgets:
            row.flops = _flops(row.name, row.overrides, batch)
    return rows


def _warnings(fired, findings: dict[str, tuple[str, list[str]]], rows: list[RecCandidate]) -> list[Advice]:
    """The fired warning rules, then each candidate finding that concerns a preset shown."""
    warnings = [Advice(r.id, r.advice, r.fix) for r in fired if r.kind == "warning"]
    shown = {r.name for r in rows}
    for rid, (msg, models) in findings.items():
        models = [m for m in models if m in shown]
        if models:
            rule = R.RULES_BY_ID[rid]
            warnings.append(Advice(rid, f"{rule.advice} ({msg})", rule.fix, models))
    return warnings


def _baseline(fired_ids: set[str], bundle, task: str | None) -> dict[str, Any] | None:
    """The gradient-boosting baseline when rule ``tabular-small-trees`` fired on loaded data."""
    if "tabular-small-trees" not in fired_ids or bundle is None:
        return None
    try:
        return hgb_baseline(bundle, task)
    except Exception as exc:  # the baseline is a courtesy; never fail the advice for it
        log.debug("baseline failed: %s", exc)
        return None


def _flops(name: str, overrides: dict[str, Any], batch: int) -> int | None:
    from archlab.analysis.summary import summary
    from archlab.registry import create, get_entry

    scale = 1.0
    steps = int(overrides.get("seq_len") or 0)
    if get_entry(name).family == "rnn" and steps > _RNN_TRACE_STEPS:
        # Tracing a recurrent net costs time per step; its FLOPs grow linearly with the steps, so
        # trace a short sequence and scale (a slight overestimate of a constant-size head).
        overrides, scale = {**overrides, "seq_len": _RNN_TRACE_STEPS}, steps / _RNN_TRACE_STEPS
    try:
        model = create(name, device="meta", **overrides)
        return int(summary(model, device="meta", batch_size=batch).flops * scale)
    except Exception as exc:  # analysis cannot trace every input kind (graphs)
        log.debug("recommend: no FLOPs for %s: %s", name, exc)
        return None


@dataclass
class _Ranking:
    """What ranking the presets gathers: the rows, the candidate findings (rule id -> (note,
    presets)), how latency was measured, and the data in each layout tried."""

    rows: list[RecCandidate] = field(default_factory=list)
    findings: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    latency_method: str | None = None
    layouts: dict[str, Any] = field(default_factory=dict)

    def note(self, rule_id: str, note: str, name: str) -> None:
        """Record that rule ``rule_id`` concerns preset ``name`` (the first note per rule is kept)."""
        self.findings.setdefault(rule_id, (note, []))[1].append(name)


@dataclass
class _Preset:
    """One preset fitted to the data, with the rules' fixes applied."""

    name: str
    entry: Any
    fitted: dict[str, Any]  # config fields fitted to the data (and the fixes)
    cfg: dict[str, Any]  # the full config
    layout: str | None  # the signal layout it reads, when not the default
    fixes: dict[str, Any] = field(default_factory=dict)  # rule fixes that are not knobs: autosize keeps them
    notes: list[str] = field(default_factory=list)


@dataclass
class _Size:
    """A preset's size: as fitted, or as :func:`autosize` scaled it to the budgets."""

    overrides: dict[str, Any]
    fits: bool
    note: str = ""
    params: int | None = None
    flops: int | None = None
    latency_ms: float | None = None


def _rank_key(r: RecCandidate) -> tuple:
    return (-r.fits_budget, -r.score, r.params or 0)


def _rank(names, bundle, facts, fired, budgets, ctx) -> _Ranking:
    """Every preset that fits the data, scored by the fired rules and the candidate checks,
    sized to the budgets; the rows sorted fitting first, then by score."""
    ranking = _Ranking()
    for name in names:
        preset = _fit_preset(name, bundle, facts, ranking.layouts)
        if preset is None:
            continue
        _apply_rule_fixes(preset, facts, budgets, ctx, ranking)
        row = _candidate_row(preset, bundle, facts, fired, budgets, ctx, ranking)
        if row is not None:
            ranking.rows.append(row)
    ranking.rows.sort(key=_rank_key)
    return ranking


def _fit_preset(name: str, bundle, facts: DataFacts, layouts: dict[str, Any]) -> _Preset | None:
    """The preset fitted to the data (a signal dataset in the layout it reads), or None when it
    does not fit."""
    from archlab.registry import get_entry

    entry = get_entry(name)
    layout = None
    try:
        if is_signal(bundle):
            fitted, layout = fit_layout(entry, bundle, facts.task, facts, layouts)
        else:
            fitted = fit_to_data(entry, bundle, facts.task, facts=facts)
            forward_check(entry, fitted, bundle)
        cfg = entry.config.build({**entry.defaults, **fitted}).model_dump()
    except ArchlabError as exc:
        log.debug("recommend: %s does not fit the data: %s", name, exc)
        return None
    return _Preset(name, entry, fitted, cfg, layout)


def _apply_rule_fixes(preset: _Preset, facts: DataFacts, budgets: dict[str, Any], ctx: Context, ranking: _Ranking):
    """Apply the TCN rules' fixes: more levels for a short receptive field (without budgets;
    with them autosize sets the depth) and mean pooling for whole-sequence classification."""
    if preset.entry.family != "tcn":
        return
    deeper = deepen_tcn(preset.cfg, facts) if not budgets else None
    if deeper:
        preset.fitted = {**preset.fitted, "channels": deeper}
        preset.cfg = {**preset.cfg, "channels": deeper}
        rf = tcn_receptive_field(deeper, int(preset.cfg.get("kernel_size", 3)))
        fix = f"fixed: {len(deeper)} levels, receptive field {rf}"
        preset.notes.append(f"[receptive-field-short] {fix}")
        ranking.note("receptive-field-short", fix, preset.name)
    pooling = tcn_pooling(preset.cfg, facts, ctx.streaming)
    if pooling:
        preset.fixes["pooling"] = pooling
        preset.fitted, preset.cfg = {**preset.fitted, **preset.fixes}, {**preset.cfg, **preset.fixes}
        fix = f"fixed: pooling={pooling!r} (was 'last')"
        preset.notes.append(f"[tcn-classify-pool] {fix}")
        ranking.note("tcn-classify-pool", fix, preset.name)


def _rule_score(family: str, fired, facts: DataFacts) -> tuple[float, list[str]]:
    """The fired rules' summed preference for ``family``, and a reason for each rule that counts."""
    score, reasons = 0.0, []
    for r in fired:
        s = r.prefer.get(family, 0)
        score += s
        if s > 0:
            reasons.append(f"[{r.id}] {r.advice}")
        elif s < 0:
            reasons.append(f"[{r.id}] counts against {family}")
    if not reasons:
        reasons.append(f"registry: trains on {facts.modality} for {facts.task}")
    return score, reasons


def _candidate_row(preset: _Preset, bundle, facts, fired, budgets, ctx, ranking: _Ranking) -> RecCandidate | None:
    """The preset's row: rule score, candidate checks, size and capacity (None when it cannot be built)."""
    score, reasons = _rule_score(preset.entry.family, fired, facts)
    for rid, note, delta in _candidate_checks(preset.entry, preset.cfg, facts, {r.id for r in fired}):
        score += delta
        preset.notes.append(f"[{rid}] {note}")
        ranking.note(rid, note, preset.name)
    size = _size(preset, bundle, facts, budgets, ctx, ranking)
    if size is None:
        return None
    delta, note_cap = capacity_check(size.params, facts.n_samples)
    score += delta
    if note_cap:
        preset.notes.append(f"[capacity-vs-data] {note_cap}")
        ranking.note("capacity-vs-data", note_cap, preset.name)
    family = preset.entry.family
    return RecCandidate(
        0,
        preset.name,
        family,
        round(score, 2),
        reasons,
        TRADEOFFS.get(family, ""),
        size.overrides,
        size.params,
        size.flops,
        size.latency_ms,
        size.fits,
        size.note,
        preset.notes,
        {} if preset.layout in (None, "channels") else {"layout": preset.layout},
    )


def _size(preset: _Preset, bundle, facts: DataFacts, budgets, ctx: Context, ranking: _Ranking) -> _Size | None:
    """The preset scaled to the budgets by :func:`autosize`, or (no budgets) its parameter count as
    fitted (FLOPs later, for the rows shown); None when it cannot be built for this data."""
    from archlab.registry import create

    try:
        if not budgets:
            model = create(preset.name, device="meta", **preset.fitted)
            return _Size(preset.fitted, True, params=sum(p.numel() for p in model.parameters()))
        sized = autosize(
            preset.name,
            bundle if preset.layout is None else ranking.layouts[preset.layout],
            task=facts.task,
            batch=ctx.batch,
            overrides=preset.fitted if bundle is None else (preset.fixes or None),
            **budgets,
        )
        ranking.latency_method = sized.latency_method or ranking.latency_method
        return _Size(sized.overrides, sized.fits, sized.stop_reason, sized.params, sized.flops, sized.latency_ms)
    except ArchlabError as exc:
        return _Size(preset.fitted, not budgets, f"not sized: {exc}")
    except Exception as exc:  # a preset that cannot be built for this data is left out
        log.debug("recommend: %s failed: %s", preset.name, exc)
        return None


def _diverse(rows: list[RecCandidate]) -> list[RecCandidate]:
    """Best of each family first (in rank order), then the rest: the top rows show real choices."""
    seen, first, rest = set(), [], []
    for r in rows:
        (rest if r.family in seen else first).append(r)
        seen.add(r.family)
    first.sort(key=_rank_key)
    return first + rest


__all__ = [
    "Advice",
    "Context",
    "RecCandidate",
    "Recommendation",
    "capacity_check",
    "hgb_baseline",
    "recommend",
    "tcn_pooling",
]
