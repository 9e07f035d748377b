"""Serve an archlab ONNX export with numpy and onnxruntime only (no torch, no archlab).

This file is copied into every ONNX export folder, so a server needs nothing else::

    python serve.py EXPORT_DIR input.npy [-o predictions.npy] [--int8] [--normalize]

``input.npy`` holds the first input (e.g. (N, 1, 8, 8) float32 images); a model with several
inputs takes an ``.npz`` with one array per input name (see preprocessing.json). ``--normalize``
applies the run's recorded preprocessing (scaling, train-split statistics, layout) to raw inputs
first, so ``input.npy`` may hold raw values as the data source gives them.

In Python::

    import serve
    p = serve.load("EXPORT_DIR")
    logits = p.predict(x)[0]
    p.labels(logits)          # class names where the run recorded them
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

_NP_DTYPES = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
    "uint8": np.uint8,
}


def _reshape(x: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    shape = tuple(step["shape"])
    if x.shape[1:] == shape:
        return x
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == int(np.prod(shape)):
        return x.reshape((len(x), *shape))  # (N, 64) or (N, 8, 8) -> (N, 1, 8, 8)
    raise ValueError(f"expected samples of shape {list(shape)}; got an array of shape {list(x.shape)}")


def _standardize(x: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    """(x - mean) / std broadcast as fitted: per feature (last axis), per channel (axis 1) or one
    value for a whole series."""
    mean, std = np.asarray(step["mean"], np.float64), np.asarray(step["std"], np.float64)
    if step.get("over") == "channel":
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean, std = mean.reshape(shape), std.reshape(shape)
    elif mean.size == 1:
        mean, std = mean.reshape(()), std.reshape(())
    return (x - mean) / std


def _layout(x: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    if step["layout"] == "sequence":
        return np.ascontiguousarray(x.transpose(0, 2, 1))  # (N, C, L) -> (N, L, C)
    return x.reshape(len(x), -1)  # flat


_STEPS = {
    "reshape": _reshape,
    "scale": lambda x, step: x / step["divide_by"],
    "standardize": _standardize,
    "layout": _layout,
}


class Predictor:
    """An ONNX Runtime session plus the export's preprocessing facts.

    Args:
        export_dir: a folder written by ``archlab export``.
        int8: use ``model.int8.onnx`` instead of ``model.onnx``.
        threads: intra-op threads (default: ONNX Runtime's choice, all cores).
        spin: let idle intra-op threads spin-wait for work (ONNX Runtime's default; a server turns
            it off so waiting threads leave the cores to the request handling).
    """

    def __init__(self, export_dir: str | Path, *, int8: bool = False, threads: int | None = None, spin: bool = True):
        import onnxruntime as ort

        self.dir = Path(export_dir)
        self.pre: dict[str, Any] = json.loads((self.dir / "preprocessing.json").read_text(encoding="utf-8"))
        model = self.dir / ("model.int8.onnx" if int8 else "model.onnx")
        if not model.is_file():
            raise FileNotFoundError(f"{model} does not exist (is {self.dir} an ONNX export folder?)")
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        so.log_severity_level = 3
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
        self.inputs = self.pre["inputs"]

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Raw input -> model input with the run's recorded steps (preprocessing.json).

        The steps are those archlab's ``Preprocessing.apply`` runs, redone here in numpy so the
        server needs no torch: reshape to one sample's shape, scale (e.g. digits' pixels / 16),
        standardise with the train split's statistics, and the signal layout. An export of a run
        from before the steps were recorded has only its ``normalization`` statistics.
        """
        steps = (self.pre.get("preprocessing") or {}).get("steps")
        if steps is None:
            stats = self.pre.get("normalization")
            steps = [{"op": "standardize", **stats}] if stats else []
        x = np.asarray(x, np.float64)
        for step in steps:
            x = _STEPS[step["op"]](x, step)
        return x.astype(np.float32)

    def predict(self, *arrays: np.ndarray, normalize: bool = False, **named: np.ndarray) -> list[np.ndarray]:
        """Run the model: positional arrays in input order, or arrays by input name."""
        feed: dict[str, np.ndarray] = {}
        for spec, arr in zip(self.inputs, arrays):
            feed[spec["name"]] = arr
        feed.update(named)
        wanted = {i.name for i in self.session.get_inputs()}
        for spec in self.inputs:
            name = spec["name"]
            if name not in feed:
                if name in wanted:
                    raise ValueError(f"missing input {name!r}: expected {spec['dtype']} {spec['shape']}")
                continue
            arr = np.asarray(feed[name]).astype(_NP_DTYPES.get(spec["dtype"], np.float32), copy=False)
            if normalize and arr.dtype.kind == "f":
                arr = self.normalize(arr).astype(np.float32)
            if arr.ndim != len(spec["shape"]):
                raise ValueError(f"input {name!r}: expected shape {spec['shape']}; got {arr.shape}")
            feed[name] = arr
        return self.session.run(None, {k: v for k, v in feed.items() if k in wanted})

    def labels(self, logits: np.ndarray) -> list[Any]:
        """argmax over the last axis, mapped to class names when the run recorded them."""
        idx = np.asarray(logits).argmax(-1)
        names = self.pre.get("class_names")
        if names:
            return [names[i] for i in idx.reshape(-1)]
        return idx.reshape(-1).tolist()


def load(export_dir: str | Path, **kwargs: Any) -> Predictor:
    """A :class:`Predictor` for an export folder."""
    return Predictor(export_dir, **kwargs)


def predict_file(
    export_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path | None = None,
    *,
    int8: bool = False,
    normalize: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Predict on an ``.npy`` (first input) or ``.npz`` (inputs by name) file; return (and save)
    the first output."""
    p = Predictor(export_dir, int8=int8, threads=threads)
    path = Path(input_path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            out = p.predict(normalize=normalize, **{k: z[k] for k in z.files})
    else:
        out = p.predict(np.load(path, allow_pickle=False), normalize=normalize)
    if output_path is not None:
        np.save(output_path, out[0], allow_pickle=False)
    return out[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run an archlab ONNX export with onnxruntime.")
    ap.add_argument("export_dir")
    ap.add_argument("input", help=".npy (first input) or .npz (inputs by name)")
    ap.add_argument("-o", "--output", help="write the first output to this .npy file")
    ap.add_argument("--int8", action="store_true", help="use model.int8.onnx")
    ap.add_argument("--normalize", action="store_true", help="apply preprocessing.json's recorded steps to raw inputs")
    a = ap.parse_args(argv)
    out = predict_file(a.export_dir, a.input, a.output, int8=a.int8, normalize=a.normalize)
    if a.output is None:
        np.set_printoptions(precision=4, suppress=True, threshold=50)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
