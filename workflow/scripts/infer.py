"""Predict the held-out target directions with a trained model (rule infer)."""

import logging

from dmri_rcnn.core.precision import configure_devices
from dmri_rcnn.study.models import model_spec
from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.predict_rcnn import predict_with_trained_model
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
    shell=int(snakemake.wildcards.shell),
    out_path=snakemake.output[0],
    batch_size=snakemake.params.batch_size,
)
logging.info("%s -> %s", spec.name, snakemake.output[0])
