# Context/target split of each test (and validation) subject: every method predicts the held-out
# target directions from the same context.


rule subsample_context:
    input:
        dmri="results/preprocessed/{subject}/data.nii.gz",
        bvals="results/preprocessed/{subject}/bvals",
        bvecs="results/preprocessed/{subject}/bvecs",
    output:
        context="results/context/{subject}/b{shell}_q{q_in}/context.nii.gz",
        context_bvecs="results/context/{subject}/b{shell}_q{q_in}/context.bvec",
        context_bvals="results/context/{subject}/b{shell}_q{q_in}/context.bval",
        targets="results/context/{subject}/b{shell}_q{q_in}/targets.nii.gz",
        target_bvecs="results/context/{subject}/b{shell}_q{q_in}/targets.bvec",
        target_bvals="results/context/{subject}/b{shell}_q{q_in}/targets.bval",
        b0="results/context/{subject}/b{shell}_q{q_in}/b0.nii.gz",
    log:
        "logs/subsample_context/{subject}/b{shell}_q{q_in}.log",
    benchmark:
        "benchmarks/subsample_context/{subject}/b{shell}_q{q_in}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        seed=context_seed,
        tolerance=config["preprocess"]["shell_tolerance"],
        antipodal=config["sampling"]["antipodal"],
    script:
        "../scripts/subsample_context.py"
