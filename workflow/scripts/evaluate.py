"""Metrics of one prediction inside the brain mask (rule evaluate)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import evaluate

start_step(snakemake)
row = evaluate(
    files=dict(snakemake.input.items()),
    subject=snakemake.wildcards.subject,
    method=snakemake.wildcards.method,
    shell=int(snakemake.wildcards.shell),
    q_in=int(snakemake.wildcards.q_in),
    out_path=snakemake.output[0],
)
logging.info("%s", row)
