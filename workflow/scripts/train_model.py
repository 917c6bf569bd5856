"""Train one model, resuming from its last completed epoch if interrupted (rule train_model)."""

from pathlib import Path

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.training import TrainingConfig, configure_threads, list_tfrecords, train_model

start_step(snakemake)
configure_threads(snakemake.threads)
train_model(
    TrainingConfig.from_dict(snakemake.params.training),
    train_records=list_tfrecords(snakemake.input.train),
    validation_records=list_tfrecords(snakemake.input.validation),
    weights_path=snakemake.output.weights,
    history_path=snakemake.output.history,
    loss_plot_path=snakemake.output.loss_plot,
    checkpoint_dir=Path(snakemake.output.weights).parent / "checkpoint",
    title=snakemake.wildcards.model,
    initial_weights=snakemake.input.get("initial"),
    devices=snakemake.config["training"].get("devices"),
)
