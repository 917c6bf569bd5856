# One model per (dimension, shell, q_in) and the combined-shell models; resumable, with history.


rule train_model:
    input:
        unpack(get_training_records),
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
    params:
        spec=model_spec,
        width=config["models"]["width"],
        min_filters=config["models"]["min_filters"],
        training=config["training"],
        antipodal=config["sampling"]["antipodal"],
        seed=training_seed,
    script:
        "../scripts/train_model.py"
