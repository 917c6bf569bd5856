"""Spherical-harmonic interpolation of the held-out target directions (rule predict_sh_baseline)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.predict_sh import predict_sh_baseline

start_step(snakemake)
chosen = predict_sh_baseline(
    context=snakemake.input.context,
    context_bvecs=snakemake.input.context_bvecs,
    target_bvecs=snakemake.input.target_bvecs,
    mask=snakemake.input.mask,
    settings=snakemake.params.settings,
    out_path=snakemake.output[0],
    seed=snakemake.params.seed,
    selection=snakemake.input.get("selection"),
)
logging.info("%s: %s", snakemake.wildcards.method, chosen)
