# Evaluation of each trained variant: metrics and figures of its latent space, and subtomogram
# averages of each class from the model's orientations.


rule evaluate_model:
    """Metrics and figures of one variant's latent space, and its training curves."""
    input:
        latents=f"{R}/models/{{variant}}/latents.tsv",
        affinity=f"{S}/affinity/affinity.csv",
        train_summary=f"{R}/models/{{variant}}/train_summary.json",
        history=f"{R}/models/{{variant}}/history.tsv",
        model=f"{R}/models/{{variant}}/model.pt",
        particles=f"{R}/particles/particles.star",
        symmetry=symmetry_files(),
    output:
        metrics=f"{R}/models/{{variant}}/metrics.json",
        confusion_csv=f"{R}/models/{{variant}}/confusion_matrix.csv",
        umap_table=f"{R}/models/{{variant}}/umap.tsv",
        novelty=f"{R}/models/{{variant}}/novelty.json",
        explorer=report(
            f"{R}/models/{{variant}}/latent_space.html",
            caption="../report/latent_space.rst",
            category="2. Latent space",
            subcategory="{variant}",
        ),
        umap=report(
            f"{R}/models/{{variant}}/umap.png",
            caption="../report/umap.rst",
            category="2. Latent space",
            subcategory="{variant}",
        ),
        confusion=report(
            f"{R}/models/{{variant}}/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="3. Classification",
            subcategory="{variant}",
        ),
        pose=report(
            f"{R}/models/{{variant}}/pose_correlation.png",
            caption="../report/pose_correlation.rst",
            category="4. Pose",
            subcategory="{variant}",
        ),
        prior=report(
            f"{R}/models/{{variant}}/prior_vs_latent.png",
            caption="../report/prior_vs_latent.rst",
            category="2. Latent space",
            subcategory="{variant}",
        ),
        interpolations=report(
            f"{R}/models/{{variant}}/interpolations.png",
            caption="../report/interpolations.rst",
            category="5. Interpolations",
            subcategory="{variant}",
        ),
        interpolation_stack=f"{R}/models/{{variant}}/interpolation.mrcs",
        training_curves=report(
            f"{R}/models/{{variant}}/training_curves.png",
            caption="../report/training_curves.rst",
            category="6. Training",
            subcategory="{variant}",
        ),
    log:
        f"{R}/logs/evaluate_model/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate_model/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        class_names=CLASSES,
        evaluation=config["evaluation"],
        seed=lambda wildcards: int(wildcards.seed),
        numba_cache="results/cache/numba",  # shared by studies, like the structure cache
    script:
        "../../scripts/evaluate_model.py"


rule average_particles:
    """Per seen class, the average of its particles turned back by the model's orientations."""
    input:
        latents=f"{R}/models/{{variant}}/latents.tsv",
        particles=f"{R}/particles/particles.star",
        maps=map_files(),
        model=f"{R}/models/{{variant}}/model.pt",
        symmetry=symmetry_files(),
    output:
        stack=f"{R}/models/{{variant}}/class_averages.mrcs",
        table=report(
            f"{R}/models/{{variant}}/class_averages.tsv",
            caption="../report/class_averages.rst",
            category="4. Pose",
            subcategory="{variant}",
        ),
        figure=report(
            f"{R}/models/{{variant}}/class_averages_fsc.png",
            caption="../report/class_averages.rst",
            category="4. Pose",
            subcategory="{variant}",
        ),
    log:
        f"{R}/logs/average_particles/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/average_particles/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1  # measured: a second thread does not shorten it; evaluate_model runs beside it
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        class_names=CLASSES,
        structures=STRUCTURES,
        wedge_tilt_max_deg=wedge_tilt_max_deg(),
        symmetry=config["evaluation"]["symmetry"],
        shape_rotations=config["evaluation"]["shape_rotations"],
        seed=lambda wildcards: int(wildcards.seed),
        angles_from=angles_from(),
    script:
        "../../scripts/average_particles.py"
