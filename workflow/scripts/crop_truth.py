"""Crop a synthetic subject's ground-truth maps with its crop box (rule crop_truth)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.data import crop_truth

start_step(snakemake)
for key in ("tissue", "fibre_dirs", "fibre_fractions"):
    crop_truth(snakemake.input[key], snakemake.input.box, snakemake.output[key])
    logging.info("cropped %s", snakemake.input[key])
