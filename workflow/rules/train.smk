# One model per (dimension, shell, q_in) and the combined-shell models; resumable, with history.


rule train_model:
    input:
        unpack(get_training_records),
        unpack(get_initial_weights),
    output:
        weights="results/models/{model}/best.weights.h5",
        description="results/models/{model}/best.weights.json",
        history=report(
            "results/models/{model}/history.tsv",
            caption="../report/history.rst",
            category="Training",
            labels={"model": "{model}", "type": "history"},
        ),
        loss_plot=report(
            "results/models/{model}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            labels={"model": "{model}", "type": "loss curve"},
        ),
    log:
        "logs/train_model/{model}.log",
    benchmark:
        "benchmarks/train_model/{model}.tsv"
    conda:
        "../../envs/tensorflow.yaml"
    container:
        container_image("gpu")
    threads: config["training"]["threads"]
    resources:
        gpu=training_gpus(),
    params:
        # every setting of the training: a change retrains the model
        training=training_config,
    script:
        "../scripts/train_model.py"


# models.weights: published (or super_resolve.weights: published): the authors' checkpoint, downloaded once
# into $DMRI_RCNN_DIR (default ~/.dmri_rcnn) and saved with its description like a model trained here.
rule import_published_weights:
    output:
        weights="resources/published_weights/{model}.weights.h5",
        description="resources/published_weights/{model}.weights.json",
    log:
        "logs/import_published_weights/{model}.log",
    benchmark:
        "benchmarks/import_published_weights/{model}.tsv"
    conda:
        "../../envs/tensorflow.yaml"
    params:
        checkpoint=published_checkpoint,
    script:
        "../scripts/import_published_weights.py"
