"""The DTI baseline: a tensor fitted to b0 and the context, extrapolated to a target shell (rule extrapolate_dti)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.predict_dti import extrapolate_dti

start_step(snakemake)
extrapolate_dti(
    files=dict(snakemake.input.items()),
    context_shell=int(snakemake.params.context_shell),
    out_path=snakemake.output[0],
)
logging.info("DTI -> %s", snakemake.output[0])
