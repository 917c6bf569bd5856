# Super-resolution of whole scans that have no held-out targets (the clinical use); the target
# `snakemake super_resolve` (workflow/Snakefile) asks for every subject of the super_resolve section.


rule super_resolve_subject:
    input:
        unpack(get_subject_files),
        weights=super_resolve_weights,
    output:
        dmri="results/super_resolved/{subject}/data.nii.gz",
        bvals="results/super_resolved/{subject}/bvals",
        bvecs="results/super_resolved/{subject}/bvecs",
    log:
        "logs/super_resolve_subject/{subject}.log",
    benchmark:
        "benchmarks/super_resolve_subject/{subject}.tsv"
    conda:
        "../../envs/tensorflow.yaml"
    container:
        container_image("gpu")
    threads: 2
    resources:
        gpu=gpus_per_job(),
    params:
        settings=super_resolve_params,
        batch_size=config["inference"]["batch_size"],
        antipodal=config["sampling"]["antipodal"],
    script:
        "../scripts/super_resolve_subject.py"
