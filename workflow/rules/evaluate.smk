# Metrics of every prediction inside the brain mask, and the summary table.


rule evaluate:
    input:
        unpack(get_cropped_truth),
        prediction="results/predictions/{subject}/b{shell}_q{q_in}/{method}.nii.gz",
        targets="results/context/{subject}/b{shell}_q{q_in}/targets.nii.gz",
        target_bvecs="results/context/{subject}/b{shell}_q{q_in}/targets.bvec",
        target_bvals="results/context/{subject}/b{shell}_q{q_in}/targets.bval",
        context="results/context/{subject}/b{shell}_q{q_in}/context.nii.gz",
        context_bvecs="results/context/{subject}/b{shell}_q{q_in}/context.bvec",
        context_bvals="results/context/{subject}/b{shell}_q{q_in}/context.bval",
        b0="results/context/{subject}/b{shell}_q{q_in}/b0.nii.gz",
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
    output:
        "results/metrics/{subject}/b{shell}_q{q_in}/{method}.tsv",
    log:
        "logs/evaluate/{subject}/b{shell}_q{q_in}/{method}.log",
    benchmark:
        "benchmarks/evaluate/{subject}/b{shell}_q{q_in}/{method}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/evaluate.py"


rule summarise:
    input:
        get_all_metrics,
    output:
        report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category="Results",
            labels={"table": "summary"},
        ),
    log:
        "logs/summarise/summary.log",
    benchmark:
        "benchmarks/summarise/summary.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/summarise.py"
