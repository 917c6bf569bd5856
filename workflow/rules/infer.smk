# Predictions of the RCNN models (1D, 3D and the combined-shell model) from each subject's context.


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
    resources:
        gpu=gpus_per_job(),
    params:
        # the model's name: the script rebuilds it from the config and checks the weights' description
        model=trained_model,
        batch_size=config["inference"]["batch_size"],
    script:
        "../scripts/infer.py"
