"""Crop a subject to its brain (rule autocrop)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.data import autocrop

start_step(snakemake)
shape = autocrop(
    snakemake.input.dmri,
    snakemake.input.bvals,
    snakemake.input.bvecs,
    snakemake.input.mask,
    out=dict(snakemake.output.items()),
    box_path=snakemake.output.box,
    slab=snakemake.params.slab,
)
logging.info("cropped %s to %s", snakemake.wildcards.subject, shape)
