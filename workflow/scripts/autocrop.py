"""Crop a subject to its brain (rule autocrop)."""

import logging

from dmri_rcnn.study.data import crop_subject

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
shape = crop_subject(
    snakemake.input.dmri,
    snakemake.input.bvals,
    snakemake.input.bvecs,
    snakemake.input.mask,
    out=dict(snakemake.output.items()),
    box_path=snakemake.output.box,
)
logging.info("cropped %s to %s", snakemake.wildcards.subject, shape)
