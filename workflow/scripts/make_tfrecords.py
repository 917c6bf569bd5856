"""Write one training TFRecord per part of a subject (rule make_tfrecords)."""

import logging

from dmri_rcnn.study.logs import log_to_file
from dmri_rcnn.study.data import make_tfrecords

log_to_file(snakemake.log[0])
for path in make_tfrecords(snakemake.input.parts, snakemake.output.records):
    logging.info("wrote %s", path)
