"""Train one model, resuming from its last completed epoch if interrupted (rule train_model)."""

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.training import TrainingConfig, TrainingOutputs, configure_threads, list_tfrecords, train_model

start_step(snakemake)
configure_threads(snakemake.threads)
train_model(
    TrainingConfig.from_dict(snakemake.params.training),
    train_records=list_tfrecords(snakemake.input.train),
    validation_records=list_tfrecords(snakemake.input.validation),
    outputs=TrainingOutputs(
        weights=snakemake.output.weights,
        history=snakemake.output.history,
        loss_plot=snakemake.output.loss_plot,
    ),
    title=snakemake.wildcards.model,
    initial_weights=snakemake.input.get("initial"),
    devices=snakemake.config["training"].get("devices"),
)
