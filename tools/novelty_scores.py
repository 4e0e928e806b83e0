"""Which novelty score tells unseen particles from seen ones best? Every candidate on a study's
latents, on the val split (where a choice may be made) and on the test split (reported).

Usage: ``python tools/novelty_scores.py results/<study>/seed<k> [--model-evidence] [--tsv out.tsv]``

Each variant's ``models/<variant>/latents.tsv``: every score is fitted on the ``train`` particles'
mu only and scored on the held-out seen particles (``val``, then ``test``) against the
``unseen`` particles of the classes held out of training (the extraction's false positives,
class ``background``, apart as ``junk``). Scores: the four of ``cryoavae.inference.novelty``,
the class-conditional Gaussian log-likelihood (per-class Ledoit-Wolf covariance, max over
classes), k-NN distances (cosine, and Euclidean on mu as it is; k = 1, 5, 10) and minus the length
of mu. ``--model-evidence`` encodes every particle again with the variant's ``model.pt`` for what
``latents.tsv`` does not hold: the encoder's mean log-variance, the KL per particle, the
reconstruction's mean squared error, and that error added to the Mahalanobis distance (each
standardised on the train particles). ``thr``: the threshold keeping 95 % of the val particles;
``test kept``: the test particles at or below it; ``unseen flagged``: unseen particles above it.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from cryoavae.inference.latents import fit_column, latent_columns, matched_classes, read_latents
from cryoavae.inference.novelty import SCORES, fit_novelty, seen_recall_threshold

RECALL = 0.95


def latent_scores(latents: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every score of mu (and, with the orientation step, of the fit to the matched template),
    for every row, fitted on the train rows."""
    model = fit_novelty(latents, [])
    mu = latents[latent_columns(latents, "mu")].to_numpy(np.float64)
    fits = fit_column(latents)
    given = [s for s in SCORES if model.can_give(s, fits is not None)]
    matched = matched_classes(latents)
    scores = {s: v.to_numpy() for s, v in model.scores(mu, given, fits, matched).items()}
    loglik = []
    for mean, precision in zip(model.means, model.precisions, strict=True):
        d = mu - mean
        _, logdet = np.linalg.slogdet(precision)
        loglik.append(np.einsum("ij,jk,ik->i", d, precision, d) - logdet)
    scores["gaussian_loglik (minus max)"] = np.min(loglik, axis=0)
    unit = mu / np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12)
    train = model.train_mu
    for k in (1, 5, 10):
        near = NearestNeighbors(n_neighbors=k, metric="cosine").fit(train)
        scores[f"knn cosine k={k}"] = near.kneighbors(unit)[0][:, -1]
        near = NearestNeighbors(n_neighbors=k).fit(train)
        scores[f"knn euclidean k={k}"] = near.kneighbors(mu)[0][:, -1]
    scores["minus length of mu"] = -np.linalg.norm(mu, axis=1)
    if fits is not None:  # the misfit alone, beside mu's scores and their sum
        scores["minus orientation fit"] = -fits
    return scores


def model_evidence(seed_dir: Path, variant: str, latents: pd.DataFrame) -> dict[str, np.ndarray]:
    """The encoder's mean log-variance, the KL and the reconstruction error of every particle."""
    import torch

    from cryoavae.model.vae import load_model
    from cryoavae.particles import ParticleImages, read_particle_table
    from cryoavae.particles.batches import Split, StreamedBatches, batch_indices

    star = seed_dir / "particles" / "particles.star"
    table = read_particle_table(star)
    model, _, _ = load_model(seed_dir / "models" / variant / "model.pt", "cpu")
    model.eval()
    n = len(table)
    source = StreamedBatches(
        ParticleImages(table, star), Split(np.arange(n), np.zeros(n, np.int64)), torch.device("cpu")
    )
    parts: dict[str, list[np.ndarray]] = {"log_var": [], "kl": [], "mse": []}
    batches = batch_indices(n, 256)
    with torch.inference_mode():
        for x, _ in source.iterate(batches):
            out = model(x)
            mu, log_var = out.mu, out.log_var
            parts["log_var"].append(log_var.mean(1).numpy())
            parts["kl"].append((0.5 * (mu**2 + log_var.exp() - 1 - log_var)).sum(1).numpy())
            parts["mse"].append(((out.reconstruction - x) ** 2).flatten(1).mean(1).numpy())
    evidence = {key: np.concatenate(v) for key, v in parts.items()}
    return {
        "encoder log-variance (mean)": evidence["log_var"],
        "KL per particle": evidence["kl"],
        "reconstruction error": evidence["mse"],
    }


def rows_of(variant: str, latents: pd.DataFrame, scores: dict[str, np.ndarray]) -> list[dict]:
    split = latents["split"].astype(str).to_numpy()
    junk = (split == "unseen") & (latents["class_name"].astype(str).to_numpy() == "background")
    unseen = (split == "unseen") & ~junk
    rows = []
    for name, s in scores.items():
        row = {"variant": variant, "score": name}
        for held in ("val", "test"):
            row[f"{held} AUROC"] = _auroc(s[split == held], s[unseen])
        threshold = seen_recall_threshold(s[split == "val"], RECALL)
        row["test kept"] = float((s[split == "test"] <= threshold).mean())
        row["unseen flagged"] = float((s[unseen] > threshold).mean())
        if junk.any():
            row["junk test AUROC"] = _auroc(s[split == "test"], s[junk])
            row["junk flagged"] = float((s[junk] > threshold).mean())
        rows.append(row)
    return rows


def _auroc(seen: np.ndarray, novel: np.ndarray) -> float:
    if len(seen) == 0 or len(novel) == 0:
        return float("nan")
    return float(roc_auc_score(np.r_[np.zeros(len(seen)), np.ones(len(novel))], np.r_[seen, novel]))


def standardised(s: np.ndarray, train: np.ndarray) -> np.ndarray:
    return (s - s[train].mean()) / s[train].std()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed_dir", type=Path, help="results/<study>/seed<k>")
    parser.add_argument("--model-evidence", action="store_true", help="encode again (slower)")
    parser.add_argument("--tsv", type=Path, help="also write the table as TSV")
    args = parser.parse_args()
    rows = []
    for path in sorted((args.seed_dir / "models").glob("*/latents.tsv")):
        variant = path.parent.name
        latents = read_latents(path)
        scores = latent_scores(latents)
        if args.model_evidence:
            scores.update(model_evidence(args.seed_dir, variant, latents))
            train = (latents["split"] == "train").to_numpy()
            scores["mahalanobis + reconstruction error"] = standardised(
                scores["mahalanobis"], train
            ) + standardised(scores["reconstruction error"], train)
        rows += rows_of(variant, latents, scores)
    table = pd.DataFrame(rows)
    if args.tsv:
        table.to_csv(args.tsv, sep="\t", index=False, float_format="%.4f")
    print(table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
