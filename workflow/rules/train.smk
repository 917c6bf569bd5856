# One model per (dimension, shell, q_in) and the combined-shell models; resumable, with history.


rule train_model:
    input:
        unpack(get_training_records),
    output:
        weights="results/models/{model}/best.weights.h5",
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
    params:
        # every setting of the training: a change retrains the model
        training=training_config,
    script:
        "../scripts/train_model.py"
