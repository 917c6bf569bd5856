"""Train one model, resuming from its last completed epoch if interrupted (rule train_model)."""

from pathlib import Path

from dmri_rcnn.study.logs import log_to_file
from dmri_rcnn.training import configure_threads, list_tfrecords, train_model

log_to_file(snakemake.log[0])
configure_threads(snakemake.threads)
spec = snakemake.params.spec
settings = snakemake.params.training
output_dir = Path(snakemake.output.weights).parent
train_model(
    model_dim=spec["dim"],
    shells=spec["shells"],
    q_in=spec["q_in"],
    train_records=list_tfrecords(snakemake.input.train),
    validation_records=list_tfrecords(snakemake.input.validation),
    weights_path=snakemake.output.weights,
    history_path=snakemake.output.history,
    loss_plot_path=snakemake.output.loss_plot,
    checkpoint_dir=output_dir / "checkpoint",
    width=snakemake.params.width,
    min_filters=snakemake.params.min_filters,
    epochs=settings["epochs"],
    steps_per_epoch=settings["steps_per_epoch"],
    validation_steps=settings["validation_steps"],
    batch_size=settings["batch_size"],
    q_out=settings["q_out"],
    learning_rate=settings["learning_rate"],
    shuffle_buffer=settings["shuffle_buffer"],
    seed=snakemake.params.seed,
    antipodal=snakemake.params.antipodal,
    loss=settings["loss"],
    lr_schedule=settings["lr_schedule"],
    title=snakemake.wildcards.model,
    initial_weights=snakemake.input.get("initial"),
)
