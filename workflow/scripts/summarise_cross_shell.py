"""The cross-shell summary: mean and sd over test subjects per method, target shell and q_in (rule summarise_cross_shell)."""

import logging

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import summarise_cross_shell

start_step(snakemake)
table = summarise_cross_shell(paths=list(snakemake.input), out_path=snakemake.output[0])
logging.info("%d rows -> %s", len(table), snakemake.output[0])
