"""Write one training TFRecord per part of a subject (rule make_tfrecords)."""

import logging

from dmri_rcnn.study.data import make_tfrecords

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
for path in make_tfrecords(snakemake.input.parts, snakemake.output.records):
    logging.info("wrote %s", path)
