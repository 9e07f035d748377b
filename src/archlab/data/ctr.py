"""A click-through-rate style tabular set with categorical columns: ``affairs`` (statsmodels).

statsmodels ships the 1974 Redbook survey of 6,366 married women (Fair 1978). Every column is
categorical or a small integer scale (marriage rating 1-5, age band, years married, children,
religiousness 1-4, education, occupation, husband's occupation); the binary target is "reported
any extramarital time" (``affairs > 0``, 32% positive). Its shape is the CTR shape - sparse
categorical fields plus a few dense numbers, a binary label, class imbalance - so Wide & Deep
and DLRM train on it as on Criteo, only small.

Shapes: inputs ``dense`` (N, 3) float32 (age, years married, children; standardised with train
statistics) and ``sparse`` (N, 8) int64 (one id per field; ids in ``[0, field_sizes[f])``,
index 0 reserved for values unseen in training); target (N,) float32 in {0, 1}.
``info["field_sizes"]`` and ``info["dense_features"]`` size the model.
"""

from __future__ import annotations

import numpy as np
import torch

from archlab.data.base import DataBundle, Split
from archlab.data.splits import split_indices
from archlab.errors import require

FIELDS = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ", "occupation", "occupation_husb"]
DENSE = ["age", "yrs_married", "children"]


def load_affairs(*, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> DataBundle:
    """The statsmodels ``fair`` survey as a CTR task (see module docs)."""
    sm_data = require("statsmodels.datasets", "data", "the affairs dataset")
    df = sm_data.fair.load_pandas().data
    y = (df["affairs"].to_numpy() > 0).astype(np.float32)
    tr, va, te = split_indices(len(y), val_fraction, test_fraction, seed, y.astype(np.int64))
    sparse = np.zeros((len(df), len(FIELDS)), dtype=np.int64)
    sizes = []
    for j, col in enumerate(FIELDS):
        values = df[col].to_numpy()
        vocab = {v: i + 1 for i, v in enumerate(sorted(set(values[tr].tolist())))}  # 0 = unseen
        sparse[:, j] = [vocab.get(v, 0) for v in values.tolist()]
        sizes.append(len(vocab) + 1)
    dense = df[DENSE].to_numpy(dtype=np.float64)
    mean, std = dense[tr].mean(0), dense[tr].std(0) + 1e-8
    dense = ((dense - mean) / std).astype(np.float32)
    d, s, t = torch.from_numpy(dense), torch.from_numpy(sparse), torch.from_numpy(y)

    def split(idx) -> Split:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Split(inputs=(d[idx], s[idx]), target=t[idx])

    info = {
        "dense_features": len(DENSE),
        "field_sizes": sizes,
        "field_names": FIELDS,
        "dense_names": DENSE,
        "num_classes": 2,
        "positive_rate": float(y[tr].mean()),
        "source": "statsmodels.datasets.fair",
        "normalization": {"mean": mean.tolist(), "std": std.tolist(), "over": "feature"},
        "seed": seed,
        "split_sizes": {"train": len(tr), "val": len(va), "test": len(te)},
    }
    return DataBundle(
        name="affairs", modality="tabular", task="ctr", train=split(tr), val=split(va), test=split(te), info=info
    )
