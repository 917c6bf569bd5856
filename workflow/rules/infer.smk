# Context/target split of each test (and validation) subject, then predictions by every method from the
# same context.


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


rule infer:
    input:
        context="results/context/{subject}/b{shell}_q{q_in}/context.nii.gz",
        context_bvecs="results/context/{subject}/b{shell}_q{q_in}/context.bvec",
        target_bvecs="results/context/{subject}/b{shell}_q{q_in}/targets.bvec",
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
        weights=get_model_weights,
    output:
        "results/predictions/{subject}/b{shell}_q{q_in}/{method}.nii.gz",
    log:
        "logs/infer/{subject}/b{shell}_q{q_in}/{method}.log",
    benchmark:
        "benchmarks/infer/{subject}/b{shell}_q{q_in}/{method}.tsv"
    wildcard_constraints:
        method=r"[13]D(_combined)?",
    conda:
        "../../envs/tensorflow.yaml"
    container:
        container_image("gpu")
    threads: 2
    params:
        spec=inference_model_spec,
        batch_size=config["inference"]["batch_size"],
    script:
        "../scripts/infer.py"


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
