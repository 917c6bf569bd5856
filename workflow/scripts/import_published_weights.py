"""Fetch a published checkpoint and save it as a described .weights.h5 (rule import_published_weights)."""

import logging

from dmri_rcnn.core.precision import configure_devices
from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.pretrained import import_published_weights

start_step(snakemake)
configure_devices()  # TensorFlow's first operation would otherwise reserve a GPU whole
model_dim, shell, q_in = snakemake.params.checkpoint
import_published_weights(model_dim, shell, q_in, out_path=snakemake.output.weights)
logging.info("published %sD %s q_in=%s -> %s", model_dim, shell, q_in, snakemake.output.weights)
