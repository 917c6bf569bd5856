# The spherical-harmonics baselines: order and smoothing chosen on the validation subjects, then
# predictions from each test subject's context.


rule select_sh_baseline:
    input:
        context=expand(
            "results/context/{subject}/b{{shell}}_q{{q_in}}/context.nii.gz",
            subject=VALIDATION_SUBJECTS,
        ),
        context_bvecs=expand(
            "results/context/{subject}/b{{shell}}_q{{q_in}}/context.bvec",
            subject=VALIDATION_SUBJECTS,
        ),
        targets=expand(
            "results/context/{subject}/b{{shell}}_q{{q_in}}/targets.nii.gz",
            subject=VALIDATION_SUBJECTS,
        ),
        target_bvecs=expand(
            "results/context/{subject}/b{{shell}}_q{{q_in}}/targets.bvec",
            subject=VALIDATION_SUBJECTS,
        ),
        mask=expand(
            "results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
            subject=VALIDATION_SUBJECTS,
        ),
    output:
        "results/sh_selection/b{shell}_q{q_in}/{method}.json",
    log:
        "logs/select_sh_baseline/b{shell}_q{q_in}/{method}.log",
    benchmark:
        "benchmarks/select_sh_baseline/b{shell}_q{q_in}/{method}.tsv"
    wildcard_constraints:
        method=r"SH[A-Za-z0-9_]*",
    conda:
        "../../envs/evaluation.yaml"
    params:
        settings=sh_settings,
    script:
        "../scripts/select_sh_baseline.py"


rule predict_sh_baseline:
    input:
        unpack(get_sh_selection),
        context="results/context/{subject}/b{shell}_q{q_in}/context.nii.gz",
        context_bvecs="results/context/{subject}/b{shell}_q{q_in}/context.bvec",
        target_bvecs="results/context/{subject}/b{shell}_q{q_in}/targets.bvec",
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
    output:
        "results/predictions/{subject}/b{shell}_q{q_in}/{method}.nii.gz",
    log:
        "logs/predict_sh_baseline/{subject}/b{shell}_q{q_in}/{method}.log",
    benchmark:
        "benchmarks/predict_sh_baseline/{subject}/b{shell}_q{q_in}/{method}.tsv"
    wildcard_constraints:
        method=r"SH[A-Za-z0-9_]*",
    conda:
        "../../envs/evaluation.yaml"
    params:
        settings=sh_settings,
        seed=context_seed,
    script:
        "../scripts/predict_sh_baseline.py"
