"""Write one training TFRecord per part of a subject (rule make_tfrecords)."""

import logging

from dmri_rcnn.core.precision import configure_devices
from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.data import make_tfrecords

start_step(snakemake)
configure_devices()  # TensorFlow's first operation would otherwise reserve a GPU whole
for path in make_tfrecords(snakemake.input.parts, snakemake.output.records):
    logging.info("wrote %s", path)
