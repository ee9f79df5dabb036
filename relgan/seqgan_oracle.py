"""SeqGAN's fixed synthetic oracle (the "target LSTM" of Yu et al. 2017, whose NLL_oracle every paper's Table 1
reports): its 15 weight arrays, verified by hash and loaded without pickle, as an :class:`relgan.oracle.OracleLSTM`.

SeqGAN's recurrence (``target_lstm.py``), x the embedded token, h0 = c0 = 0, start token 0:

    i = sigmoid(x Wi + h Ui + bi)     f = sigmoid(x Wf + h Uf + bf)     o = sigmoid(x Wog + h Uog + bog)
    c~ = tanh(x Wc + h Uc + bc)       c = f * c + i * c~                 h = o * tanh(c)
    logits = h Wo + bo

is :class:`OracleLSTM`'s step with its gates stacked in PyTorch's order (input, forget, cell, output): weight_ih
= [Wi; Wf; Wc; Wog]^T, weight_hh = [Ui; Uf; Uc; Uog]^T, bias = [bi, bf, bc, bog], weight_out = Wo^T,
bias_out = bo. ``data/seqgan_oracle/prepare.py --source DIR`` copies the verified files; ``data.oracle.params``
names the folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from relgan.errors import DataError
from relgan.io_utils import atomic_write_bytes

# file -> git blob hash (git hash-object) of the arrays of pclucas14/GansFallingShort @ e6be915b1aed,
# synthetic_data_experiments/oracle_params/, bit-identical to LantaoYu/SeqGAN's save/target_params_py3.pkl
FILES = {
    "embedding.npz": "5ee19193bb972a4d6eb7ec3e811455ff14e5700b",
    "wi.npz": "6cb3ac3a272dace90ee045088bef59491c5e34c8",
    "ui.npz": "c16b70de13d06ef75d858e3d8766d98eebb1e7d6",
    "bi.npz": "8e961f72877b770de95af88193189760965aafb5",
    "wf.npz": "addc4ae740f64b9911279cf3863b99f2141ce7f7",
    "uf.npz": "ee70b3fbaf5eb80dbf02b0856f0035b036b855c9",
    "bf.npz": "acebf16f853d3db7ba1bc1036269f7792f20100d",
    "wog.npz": "e1d1026afdda917d6b3df3272a45464ae73406e0",
    "uog.npz": "2ca2c99a596c9ffcde3953d3e4ee7647aedcf2ac",
    "bog.npz": "af097448e7777ef4a5da085cf9e7cf92f6843dd6",
    "wc.npz": "88936adbea8ffd5b9eb1a50f89906cae9fcf4dc8",
    "uc.npz": "671361a82aba5dc6a820ec769a6b4a715537b1a5",
    "bc.npz": "24105383b92b73afc6b2eda7c69f3c1443ddd72d",
    "wo.npz": "288bb5b7313d175fcefa63e1b8789312b2c6455b",
    "bo.npz": "e9d19fa2ef719239ee638c73facc6a8a3324fa70",
}


def git_blob_hash(payload: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(payload) + payload).hexdigest()


def verified_arrays(folder: Path) -> dict[str, np.ndarray]:
    """The 15 arrays of ``folder`` by name (wi, ui, ...), each file checked against its hash, read without
    pickle; a missing or altered file is a :class:`DataError` naming it."""
    arrays = {}
    for name, blob in FILES.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing; run data/seqgan_oracle/prepare.py --source <folder of the 15 arrays>")
        payload = path.read_bytes()
        if git_blob_hash(payload) != blob:
            raise DataError(
                f"{path}: checksum mismatch (git blob {git_blob_hash(payload)[:12]}, expected {blob[:12]}); "
                "this is not SeqGAN's oracle"
            )
        with path.open("rb") as handle:
            arrays[name.removesuffix(".npz")] = np.load(handle, allow_pickle=False)
    return arrays


def oracle_weights(folder: Path) -> dict[str, Tensor]:
    """:class:`relgan.oracle.OracleLSTM`'s buffers (float64) from SeqGAN's arrays in ``folder``."""
    a = {name: torch.from_numpy(array).double() for name, array in verified_arrays(folder).items()}
    return {
        "embedding": a["embedding"],
        "weight_ih": torch.cat([a["wi"], a["wf"], a["wc"], a["wog"]], dim=1).t().contiguous(),
        "weight_hh": torch.cat([a["ui"], a["uf"], a["uc"], a["uog"]], dim=1).t().contiguous(),
        "bias": torch.cat([a["bi"], a["bf"], a["bc"], a["bog"]]),
        "weight_out": a["wo"].t().contiguous(),
        "bias_out": a["bo"],
    }


def copy_verified(source: Path, out: Path) -> list[str]:
    """Copy the 15 verified arrays from ``source`` to ``out``; one line per file."""
    verified_arrays(source)  # every file checked before any is written
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, blob in FILES.items():
        atomic_write_bytes(out / name, (source / name).read_bytes())
        lines.append(f"wrote {out / name}: git blob {blob[:12]}")
    return lines
