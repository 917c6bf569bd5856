"""Summary table over test subjects: one row per method, shell and q_in (rule summarise)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import summarise

start_step(snakemake)
table = summarise(list(snakemake.input), snakemake.output.summary, snakemake.output.result)
logging.info("\n%s", table.to_string())
