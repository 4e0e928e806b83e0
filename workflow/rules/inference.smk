# Inference with a trained model: latents and orientations of every particle, results written
# back onto the input particles, and new particle sets placed in the latent space.


rule encode_particles:
    """Encode one part of the particle table (inference.jobs parts) with the trained model: mu,
    pose, labels and the encoder's orientation."""
    input:
        model=f"{R}/models/{{variant}}/model.pt",
        particles=variant_particles,
        stacks=particle_stacks(),
    output:
        f"{R}/models/{{variant}}/inference/encoded_{{job}}.tsv",
    log:
        f"{R}/logs/encode_particles/{{variant}}_{{job}}.log",
    benchmark:
        f"{R}/benchmarks/encode_particles/{{variant}}_{{job}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        jobs=INFERENCE_JOBS,
    script:
        "../../scripts/encode_particles.py"


rule fit_references:
    """The templates every matching job shares: k-means centres of the train particles' mu,
    rendered by the decoder and refined on a subset of the particles (config orientation).
    """
    input:
        model=f"{R}/models/{{variant}}/model.pt",
        particles=variant_particles,
        stacks=particle_stacks(),
        encoded=inference_parts("encoded"),
    output:
        f"{R}/models/{{variant}}/inference/references.npz",
    log:
        f"{R}/logs/fit_references/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/fit_references/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        orientation=orientation_params(),
        seed=lambda wildcards: int(wildcards.seed),
        microscope=microscope(),
    script:
        "../../scripts/fit_references.py"


rule match_particles:
    """Match one part of the particle table against the shared references: each particle's
    orientation, shift and template (config orientation)."""
    input:
        references=f"{R}/models/{{variant}}/inference/references.npz",
        encoded=f"{R}/models/{{variant}}/inference/encoded_{{job}}.tsv",
        particles=variant_particles,
        stacks=particle_stacks(),
    output:
        f"{R}/models/{{variant}}/inference/matched_{{job}}.tsv",
    log:
        f"{R}/logs/match_particles/{{variant}}_{{job}}.log",
    benchmark:
        f"{R}/benchmarks/match_particles/{{variant}}_{{job}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        jobs=INFERENCE_JOBS,
        orientation=orientation_params(),
        microscope=microscope(),
    script:
        "../../scripts/match_particles.py"


rule embed_particles:
    """Every particle's latents, pose and orientation: the inference jobs' parts gathered in
    table order."""
    input:
        encoded=inference_parts("encoded"),
        matched=inference_parts("matched") if MATCHING else [],
        particles=variant_particles,
    output:
        f"{R}/models/{{variant}}/latents.tsv",
    log:
        f"{R}/logs/embed_particles/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/embed_particles/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/embed_particles.py"


rule recentre_particles:
    """The particle table with where this variant's template matching found each particle's
    centre: a variant re-centred from it (training.recentre_from) reads its particles moved
    onto those centres."""
    input:
        particles=f"{R}/particles/particles.star",
        latents=f"{R}/models/{{variant}}/latents.tsv",
    output:
        f"{R}/particles/recentred_{{variant}}.star",
    log:
        f"{R}/logs/recentre_particles/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/recentre_particles/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/recentre_particles.py"


rule annotate_particles:
    """The input particles (your STAR file for a STAR study) with each one's results added."""
    input:
        latents=f"{R}/models/{{variant}}/latents.tsv",
        umap_table=f"{R}/models/{{variant}}/umap.tsv",
        novelty=f"{R}/models/{{variant}}/novelty.json",
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


rule relion5_particles:
    """The annotated particles as a RELION 5 tomography particle set: tomogram, centred position,
    the model's orientation and shift, predicted class (inference.relion5)."""
    input:
        annotated=f"{R}/models/{{variant}}/particles_annotated.star",
    output:
        f"{R}/models/{{variant}}/particles_relion5.star",
    log:
        f"{R}/logs/relion5_particles/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/relion5_particles/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        class_names=CLASSES,
        optics=relion5_optics(),
    script:
        "../../scripts/relion5_particles.py"


rule apply_model:
    """Place a new particle set (e.g. from a tomogram) in a trained model's latent space and in
    the study's UMAP."""
    input:
        model=f"{R}/models/{{variant}}/model.pt",
        reference=f"{R}/models/{{variant}}/latents.tsv",
        umap_table=f"{R}/models/{{variant}}/umap.tsv",
        novelty=f"{R}/models/{{variant}}/novelty.json",
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
    params:
        orientation=orientation_params(),
        seed=lambda wildcards: int(wildcards.seed),
        microscope=microscope(),
    script:
        "../../scripts/apply_model.py"


rule relion5_applied_particles:
    """A new particle set's annotated STAR file as a RELION 5 tomography particle set."""
    input:
        annotated=f"{R}/applied/{{variant}}/{{particle_set}}.star",
    output:
        f"{R}/applied/{{variant}}/{{particle_set}}_relion5.star",
    log:
        f"{R}/logs/relion5_applied_particles/{{variant}}/{{particle_set}}.log",
    benchmark:
        f"{R}/benchmarks/relion5_applied_particles/{{variant}}/{{particle_set}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        class_names=CLASSES,
        optics=relion5_optics(),
    script:
        "../../scripts/relion5_applied_particles.py"
