"""What a trained model's latent space says: classes, cluster separation, pose, prior, open set.

One rule throughout: whatever is fitted (classifier, class centroids, pose maps) is fitted on the
``train`` particles and scored on the held-out ``val`` particles of the seen classes and on the
``unseen`` particles, so no number is flattered by the particles the encoder was trained on.

- :mod:`.evaluation`: :func:`evaluate_latents`, every metric of ``metrics.json``;
- :mod:`.classify`, :mod:`.open_set`, :mod:`.prior`, :mod:`.pose_correlation`, :mod:`.orientation`,
:mod:`.projection`: its parts;
- :mod:`.variant`: one variant evaluated from its files; :mod:`.writers`: the outputs on disk.
"""

from cryoavae.evaluate.evaluation import (
    CLASSIFIERS,
    EvaluationConfig,
    EvaluationResult,
    evaluate_latents,
)
from cryoavae.evaluate.variant import evaluate_variant
from cryoavae.evaluate.writers import (
    confusion_fractions,
    write_confusion_csv,
    write_metrics_json,
    write_umap_table,
)

__all__ = [
    "CLASSIFIERS",
    "EvaluationConfig",
    "EvaluationResult",
    "confusion_fractions",
    "evaluate_latents",
    "evaluate_variant",
    "write_confusion_csv",
    "write_metrics_json",
    "write_umap_table",
]
