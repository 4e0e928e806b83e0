rule summarize_study:
    """One table across model variants, and the provenance needed to rerun the study exactly."""
    input:
        metrics=model_outputs("metrics.json"),
        summaries=model_outputs("train_summary.json"),
        affinity_info=f"{S}/affinity/affinity_info.json",
        benchmarks=benchmark_files(),
    output:
        summary=report(
            f"{R}/summary.tsv",
            caption="../report/summary.rst",
            category="0. Summary",
        ),
        comparison=report(
            f"{R}/variant_comparison.png",
            caption="../report/variant_comparison.rst",
            category="0. Summary",
        ),
        resources=report(
            f"{R}/resources.tsv",
            caption="../report/resources.rst",
            category="0. Summary",
        ),
        resources_figure=report(
            f"{R}/resources.png",
            caption="../report/resources.rst",
            category="0. Summary",
        ),
        provenance=f"{R}/provenance.json",
        markdown=f"{R}/summary.md",
    log:
        f"{R}/logs/summarize_study.log",
    benchmark:
        f"{R}/benchmarks/summarize_study.tsv"
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        variants=VARIANTS,
        study=STUDY,
        config=config,
        angles_from=angles_from(),
    script:
        "../../scripts/summarize_study.py"


rule aggregate_seeds:
    """Every seed's metrics in one table: mean and standard deviation over the study's seeds."""
    input:
        metrics=expand(
            f"{R}/models/{{variant}}/metrics.json", seed=SEEDS, variant=VARIANTS
        ),
        averages=expand(
            f"{R}/models/{{variant}}/class_averages.tsv", seed=SEEDS, variant=VARIANTS
        ),
    output:
        summary=f"{S}/summary.tsv",
        markdown=f"{S}/summary.md",
    log:
        f"{S}/logs/aggregate_seeds.log",
    conda:
        "../../envs/cryoavae.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        variants=VARIANTS,
        seeds=SEEDS,
        study=STUDY,
        command=study_command(),
        angles_from=angles_from(),
    script:
        "../../scripts/aggregate_seeds.py"
