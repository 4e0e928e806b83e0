rule embed_particles:
    """Encode every particle (train, val, unseen) with the trained model: mu, pose, labels, and
    orientation (the encoder's, or matched against its decoder: config orientation)."""
    input:
        model=f"{R}/models/{{variant}}/model.pt",
        particles=f"{R}/particles/particles.star",
        stacks=particle_stacks(),
    output:
        f"{R}/models/{{variant}}/latents.tsv",
    log:
        f"{R}/logs/embed_particles/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/embed_particles/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        orientation=config["orientation"],
        seed=config["seed"],
        microscope=microscope(),
    script:
        "../../scripts/embed_particles.py"


rule evaluate_model:
    """Metrics and figures of one variant's latent space, and its training curves."""
    input:
        latents=f"{R}/models/{{variant}}/latents.tsv",
        affinity=f"{R}/affinity/affinity.csv",
        train_summary=f"{R}/models/{{variant}}/train_summary.json",
        history=f"{R}/models/{{variant}}/history.tsv",
        model=f"{R}/models/{{variant}}/model.pt",
        particles=f"{R}/particles/particles.star",
        symmetry=symmetry_files(),
    output:
        metrics=f"{R}/models/{{variant}}/metrics.json",
        confusion_csv=f"{R}/models/{{variant}}/confusion_matrix.csv",
        umap_table=f"{R}/models/{{variant}}/umap.tsv",
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
        seed=config["seed"],
        numba_cache="results/cache/numba",  # shared by studies, like the structure cache
    script:
        "../../scripts/evaluate_model.py"


rule fit_symmetry:
    """Each point group of evaluation.symmetry placed in its class's map frame."""
    input:
        maps=map_files(),
    output:
        f"{R}/maps/symmetry.json",
    log:
        f"{R}/logs/fit_symmetry.log",
    benchmark:
        f"{R}/benchmarks/fit_symmetry.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        structures=STRUCTURES,
        symmetry=config["evaluation"]["symmetry"],
        seed=config["seed"],
    script:
        "../../scripts/fit_symmetry.py"


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
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        class_names=CLASSES,
        structures=STRUCTURES,
        wedge_tilt_max_deg=wedge_tilt_max_deg(),
        symmetry=config["evaluation"]["symmetry"],
        shape_rotations=config["evaluation"]["shape_rotations"],
        seed=config["seed"],
    script:
        "../../scripts/average_particles.py"


rule annotate_particles:
    """The input particles (your STAR file for a STAR study) with each one's results added."""
    input:
        latents=f"{R}/models/{{variant}}/latents.tsv",
        umap_table=f"{R}/models/{{variant}}/umap.tsv",
        particles=f"{R}/particles/particles.star",
        source=source_particles(),
    output:
        f"{R}/models/{{variant}}/particles_annotated.star",
    log:
        f"{R}/logs/annotate_particles/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/annotate_particles/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        class_names=CLASSES,
    script:
        "../../scripts/annotate_particles.py"


rule apply_model:
    """Place a new particle set (e.g. from a tomogram) in a trained model's latent space."""
    input:
        model=f"{R}/models/{{variant}}/model.pt",
        reference=f"{R}/models/{{variant}}/latents.tsv",
        particles=lambda wildcards: config["apply"]["particle_sets"][
            wildcards.particle_set
        ],
    output:
        table=f"{R}/applied/{{variant}}/{{particle_set}}.tsv",
        star=f"{R}/applied/{{variant}}/{{particle_set}}.star",
    log:
        f"{R}/logs/apply_model/{{variant}}/{{particle_set}}.log",
    benchmark:
        f"{R}/benchmarks/apply_model/{{variant}}/{{particle_set}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../../scripts/apply_model.py"
