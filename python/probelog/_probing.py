"""Probing torch models from Python: run a ``torch.nn.Module`` over a probe set, no export step.

The input contract is probelog-tool's (``append --model``, docs/probing.md): float32
``[N, 3, S, S]``, RGB scaled to ``[0, 1]``, then ``(x - mean) / std`` per channel when given, in
eval mode without gradients, ``batch_size`` probes at a time. The outputs are checked as the tool
checks them: two dimensions, the same number of logits for every batch, every value finite.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ._probelog import InvalidInputError, ProbeSet

__all__ = ["Logits", "labels_of", "probe"]


class Logits(np.ndarray):
    """A model's float32 ``[P, L]`` logits over a probe set, as :func:`probe` returns them.

    A plain ``numpy.ndarray`` with two attributes that :meth:`probelog.Writer.add_model` uses
    when they are not given: ``labels`` (one per logit, or None) and ``probe_set`` (the
    :class:`probelog.ProbeSet` they were computed on: an index of another probe set refuses
    them). Arrays derived from it keep ``probe_set`` and drop ``labels``.
    """

    labels: Optional[list]
    probe_set: Optional[ProbeSet]

    def __new__(cls, values: np.ndarray, labels=None, probe_set=None):
        obj = np.asarray(values, dtype=np.float32).view(cls)
        obj.labels = labels
        obj.probe_set = probe_set
        return obj

    def __array_finalize__(self, obj):
        self.labels = None
        self.probe_set = getattr(obj, "probe_set", None)


def labels_of(model: Any, num_logits: Optional[int] = None) -> Optional[list]:
    """The class labels of a model, in logit order, where it says them: a transformers model's
    ``config.id2label``, or a timm model's ``pretrained_cfg["label_names"]``. None otherwise, or
    when they do not cover ``num_logits`` logits exactly."""
    labels = None
    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None)
    if isinstance(id2label, dict) and id2label:
        by_index = {int(k): str(v) for k, v in id2label.items()}
        if sorted(by_index) == list(range(len(by_index))):
            labels = [by_index[i] for i in range(len(by_index))]
    if labels is None:
        cfg = getattr(model, "pretrained_cfg", None)
        names = cfg.get("label_names") if isinstance(cfg, dict) else None
        if names:
            labels = [str(n) for n in names]
    if labels is not None and num_logits is not None and len(labels) != num_logits:
        return None
    return labels


def _rgb(values, what: str):
    if values is None:
        return None
    v = [float(x) for x in values]
    if len(v) != 3 or not all(math.isfinite(x) for x in v):
        raise InvalidInputError(f"{what} must be three finite numbers R, G, B, got {values!r}")
    if what == "std" and any(x == 0.0 for x in v):
        raise InvalidInputError(f"std values must be finite and non-zero, got {values!r}")
    return v


def _output_tensor(out: Any):
    """The logits tensor of a forward pass: a tensor, a transformers ModelOutput (``.logits``),
    a dict with "logits", or the first element of a tuple."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise InvalidInputError(
        f"the model returned {type(out).__name__}; a classifier must return [N, L] logits "
        "(a tensor, or an output with .logits)"
    )


def _model_device(model: Any):
    import torch

    for t in list(model.parameters())[:1] + list(model.buffers())[:1]:
        return t.device
    return torch.device("cpu")


def probe(
    model: Any,
    probe_set: Union[ProbeSet, str, "os.PathLike[str]"],
    batch_size: int = 64,
    device: Any = None,
    progress: Union[bool, Callable[[int, int], None]] = True,
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    input_size: Optional[int] = None,
) -> Logits:
    """Runs a classifier on every probe of a probe set and returns its float32 ``[P, L]`` logits
    (row ``p`` is its output on probe ``p``) as a :class:`Logits` array that carries the labels
    (``model.config.id2label`` where there is one) and the probe set.

    ``model``: any ``torch.nn.Module`` (a transformers ``AutoModelForImageClassification``, a
    timm model, a TorchScript module) or the path of a TorchScript file. It gets float32
    ``[N, 3, S, S]`` RGB in ``[0, 1]``, then ``(x - mean) / std`` per channel when ``mean`` and
    ``std`` are given, exactly as ``probelog-tool append --model`` feeds it, and may return a
    tensor, a ModelOutput with ``.logits``, or a tuple whose first element is the logits.

    ``device``: None runs where the model's parameters are; a device ("cpu", "cuda", "cuda:1",
    or "auto" for CUDA when available) moves the model there first. ``progress``: True shows a
    tqdm bar when tqdm is installed; a callable is called as ``progress(done, total)`` in probes
    after every batch; False is silent. ``input_size``: the side of the model's input when it
    differs from the probe set's (resized bilinearly with antialiasing in torch; only at the probe
    set's own size are the logits identical to probelog-tool's).

    Raises :class:`probelog.InvalidInputError` for outputs that are not ``[N, L]``, that change
    ``L`` between batches, or that hold NaN or infinity.
    """
    import torch

    if isinstance(probe_set, (str, os.PathLike)):
        probe_set = ProbeSet(os.fspath(probe_set))
    if not isinstance(probe_set, ProbeSet):
        raise TypeError("probe_set must be a probelog.ProbeSet or the path of a .pset file")
    if isinstance(model, (str, os.PathLike)):
        model = torch.jit.load(os.fspath(model), map_location="cpu")
    if not isinstance(model, torch.nn.Module):
        raise TypeError("model must be a torch.nn.Module (or the path of a TorchScript file)")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise InvalidInputError("the batch size must be at least 1")
    batch_size = int(batch_size)
    mean_v, std_v = _rgb(mean, "mean"), _rgb(std, "std")
    if input_size is not None and (int(input_size) < 1 or int(input_size) > 4096):
        raise InvalidInputError(f"input_size {input_size} is out of range 1..=4096")

    if device is not None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        model = model.to(device)
    else:
        device = _model_device(model)

    pixels = probe_set.pixels()  # uint8 [P, 3, S, S], a view of the probe set's memory
    p, size = len(probe_set), probe_set.size
    names = probe_set.names
    mean_t = torch.tensor(mean_v, dtype=torch.float32).view(1, 3, 1, 1) if mean_v else None
    std_t = torch.tensor(std_v, dtype=torch.float32).view(1, 3, 1, 1) if std_v else None

    bar = None
    report: Optional[Callable[[int, int], None]] = None
    if callable(progress):
        report = progress
    elif progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=p, unit="probe", desc="probing", leave=False)
        except ImportError:
            bar = None

    was_training = model.training
    model.eval()
    result: Optional[np.ndarray] = None
    num_logits = None
    try:
        with torch.inference_mode():
            for first in range(0, p, batch_size):
                last = min(first + batch_size, p)
                n = last - first
                x = torch.from_numpy(np.array(pixels[first:last])).to(torch.float32)  # a writable copy
                if input_size is not None and int(input_size) != size:
                    x = torch.nn.functional.interpolate(
                        x, size=(int(input_size), int(input_size)), mode="bilinear",
                        antialias=True, align_corners=False,
                    ).round_().clamp_(0, 255)
                x = x / 255.0
                if mean_t is not None:
                    x -= mean_t
                if std_t is not None:
                    x /= std_t
                s_in = x.shape[-1]
                x = x.to(device)
                try:
                    out = model(x)
                except Exception as e:  # the model's own error, named with the probes
                    raise InvalidInputError(
                        f"the model failed on probes {first}..{last} (input float32 "
                        f"[{n}, 3, {s_in}, {s_in}]): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                    ) from e
                out = _output_tensor(out)
                shape = tuple(out.shape)
                if len(shape) != 2 or shape[0] != n:
                    raise InvalidInputError(
                        f"the model returned shape {list(shape)} for a batch of {n} probes; a "
                        f"classifier must return [N, L] logits, here [{n}, L]"
                    )
                l = shape[1]
                if l == 0:
                    raise InvalidInputError(f"the model returned no logits (shape {list(shape)})")
                if num_logits is None:
                    num_logits = l
                    result = np.empty((p, l), dtype=np.float32)
                elif l != num_logits:
                    raise InvalidInputError(
                        f"the model returned {l} logits for probes {first}..{last} but "
                        f"{num_logits} before; the number of logits must not depend on the input"
                    )
                batch = out.detach().to("cpu", torch.float32).numpy()
                bad = ~np.isfinite(batch)
                if bad.any():
                    i, j = map(int, np.argwhere(bad)[0])
                    raise InvalidInputError(
                        f"the model returned {batch[i, j]} for logit {j} on probe {first + i} "
                        f"({names[first + i]!r})"
                    )
                result[first:last] = batch
                if bar is not None:
                    bar.update(n)
                if report is not None:
                    report(last, p)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    assert result is not None
    return Logits(result, labels=labels_of(model, num_logits), probe_set=probe_set)
