"""Predict a target shell from the context shell with a cross-shell model (rule predict_cross_shell)."""

import logging

from dmri_rcnn.core.precision import configure_devices
from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.models import model_spec
from dmri_rcnn.study.predict_rcnn import PredictionSettings, predict_with_trained_model
from dmri_rcnn.training import configure_threads

start_step(snakemake)
configure_threads(snakemake.threads)
configure_devices()
spec = model_spec(snakemake.config, snakemake.params.model)
predict_with_trained_model(
    context=snakemake.input.context,
    context_bvecs=snakemake.input.context_bvecs,
    target_bvecs=snakemake.input.target_bvecs,
    mask=snakemake.input.mask,
    weights=snakemake.input.weights,
    spec=spec,
    shell=int(snakemake.params.context_shell),
    out_path=snakemake.output[0],
    settings=PredictionSettings(batch_size=snakemake.params.batch_size, target_bvals=snakemake.input.target_bvals),
)
logging.info("%s -> %s", spec.name, snakemake.output[0])
