"""Errors of one prediction of a target shell: MAE, and kurtosis errors at b = 2000 (rule evaluate_cross_shell)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import evaluate_cross_shell

start_step(snakemake)
row = evaluate_cross_shell(
    files=dict(snakemake.input.items()),
    row={
        "subject": snakemake.wildcards.subject,
        "method": snakemake.wildcards.method,
        "shell": int(snakemake.wildcards.target),
        "q_in": int(snakemake.wildcards.q_in),
    },
    out_path=snakemake.output[0],
)
logging.info("%s", row)
