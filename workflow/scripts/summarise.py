"""Summary table over test subjects: one row per method, shell and q_in (rule summarise)."""

import logging

from dmri_rcnn.study.evaluation import summarise_metric_tables

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
table = summarise_metric_tables(list(snakemake.input), snakemake.output[0])
logging.info("\n%s", table.to_string())
