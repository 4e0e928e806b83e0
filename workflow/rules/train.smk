rule train_model:
    """Train one model variant; the only rule that asks for GPUs (training.devices per node)."""
    input:
        particles=variant_particles,
        stacks=particle_stacks(),
        affinity=f"{S}/affinity/affinity.csv",
    output:
        model=f"{R}/models/{{variant}}/model.pt",
        history=f"{R}/models/{{variant}}/history.tsv",
        summary=f"{R}/models/{{variant}}/train_summary.json",
    log:
        f"{R}/logs/train_model/{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/train_model/{{variant}}.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: THREADS
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime_min"],
        gpu=lambda wildcards: training_params(wildcards)["devices"],
        nodes=lambda wildcards: training_params(wildcards)["nodes"],
        tasks=lambda wildcards: training_params(wildcards)["nodes"],  # one torchrun per node
    params:
        class_names=CLASSES,
        model=model_params,
        training=training_params,
        seed=lambda wildcards: int(wildcards.seed),
        work_dir=lambda wildcards: per_seed_path(
            wildcards, "models", wildcards.variant, "checkpoints"
        ),
    script:
        "../../scripts/train_model.py"
