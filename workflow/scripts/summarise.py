"""Summary table over test subjects: one row per method, shell and q_in (rule summarise)."""

import logging

from dmri_rcnn.study.logs import log_to_file
from dmri_rcnn.study.metrics_and_figures import summarise_metric_tables

log_to_file(snakemake.log[0])
table = summarise_metric_tables(list(snakemake.input), snakemake.output[0])
logging.info("\n%s", table.to_string())
