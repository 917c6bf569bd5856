# The cross-shell study (config cross_shell, off by default): whole shells predicted from b0 and a
# b = 1000 context by the DTI extrapolation, the SH baseline (context shell) and the b-scaled
# cross-shell models, then their errors per target shell, the summary, the figure and example slices
# per target shell.


rule extract_shell:
    input:
        dmri="results/preprocessed/{subject}/data.nii.gz",
        bvals="results/preprocessed/{subject}/bvals",
        bvecs="results/preprocessed/{subject}/bvecs",
    output:
        targets="results/cross_shell/shells/{subject}/b{target}.nii.gz",
        target_bvecs="results/cross_shell/shells/{subject}/b{target}.bvec",
        target_bvals="results/cross_shell/shells/{subject}/b{target}.bval",
    log:
        "logs/extract_shell/{subject}/b{target}.log",
    benchmark:
        "benchmarks/extract_shell/{subject}/b{target}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        tolerance=config["preprocess"]["shell_tolerance"],
    script:
        "../scripts/extract_shell.py"


rule predict_cross_shell:
    input:
        unpack(cross_shell_context),
        unpack(cross_shell_target_table),
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
        weights=cross_shell_weights,
    output:
        "results/cross_shell/predictions/{subject}/q{q_in}/b{target}/{method}.nii.gz",
    log:
        "logs/predict_cross_shell/{subject}/q{q_in}/b{target}/{method}.log",
    benchmark:
        "benchmarks/predict_cross_shell/{subject}/q{q_in}/b{target}/{method}.tsv"
    wildcard_constraints:
        method=r"[13]D",
    conda:
        "../../envs/tensorflow.yaml"
    container:
        container_image("gpu")
    threads: 2
    resources:
        gpu=gpus_per_job(),
    params:
        model=cross_shell_model,
        context_shell=config["cross_shell"]["context_shell"],
        batch_size=config["inference"]["batch_size"],
    script:
        "../scripts/predict_cross_shell.py"


rule extrapolate_dti:
    input:
        unpack(cross_shell_context),
        unpack(cross_shell_target_table),
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
    output:
        "results/cross_shell/predictions/{subject}/q{q_in}/b{target}/DTI.nii.gz",
    log:
        "logs/extrapolate_dti/{subject}/q{q_in}/b{target}.log",
    benchmark:
        "benchmarks/extrapolate_dti/{subject}/q{q_in}/b{target}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    params:
        context_shell=config["cross_shell"]["context_shell"],
    script:
        "../scripts/extrapolate_dti.py"


rule evaluate_cross_shell:
    input:
        unpack(get_cropped_truth),
        unpack(cross_shell_context),
        unpack(cross_shell_targets),
        prediction=cross_shell_prediction,
        mask="results/preprocessed/{subject}/nodif_brain_mask.nii.gz",
    output:
        "results/cross_shell/metrics/{subject}/q{q_in}/b{target}/{method}.tsv",
    log:
        "logs/evaluate_cross_shell/{subject}/q{q_in}/b{target}/{method}.log",
    benchmark:
        "benchmarks/evaluate_cross_shell/{subject}/q{q_in}/b{target}/{method}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/evaluate_cross_shell.py"


rule summarise_cross_shell:
    input:
        get_cross_shell_metrics,
    output:
        report(
            "results/cross_shell/summary.tsv",
            caption="../report/cross_shell_summary.rst",
            category="Cross-shell",
            labels={"table": "summary per target shell"},
        ),
    log:
        "logs/summarise_cross_shell/summary.log",
    benchmark:
        "benchmarks/summarise_cross_shell/summary.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/summarise_cross_shell.py"


rule plot_cross_shell:
    input:
        "results/cross_shell/summary.tsv",
    output:
        report(
            "results/cross_shell/mae_per_target_shell.png",
            caption="../report/cross_shell_mae.rst",
            category="Cross-shell",
            labels={"figure": "MAE per target shell and method"},
        ),
    log:
        "logs/plot_cross_shell/mae_per_target_shell.log",
    benchmark:
        "benchmarks/plot_cross_shell/mae_per_target_shell.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/plot_cross_shell.py"


rule plot_cross_shell_slices:
    input:
        unpack(get_cross_shell_example),
        predictions=get_cross_shell_example_predictions,
    output:
        report(
            "results/cross_shell/example_slices_b{target}.png",
            caption="../report/cross_shell_slices.rst",
            category="Cross-shell",
            labels={"figure": "example slices, b = {target}"},
        ),
    log:
        "logs/plot_cross_shell_slices/b{target}.log",
    benchmark:
        "benchmarks/plot_cross_shell_slices/b{target}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    params:
        methods=get_cross_shell_example_methods,
    script:
        "../scripts/plot_cross_shell_slices.py"
