"""Choose an SH baseline's order and smoothing on the validation subjects (rule select_sh_baseline)."""

import logging

from dmri_rcnn.study.predict_sh import select_sh_baseline
from dmri_rcnn.study.logs import start_step

start_step(snakemake)
files = snakemake.input
examples = [
    {"context": c, "context_bvecs": cb, "targets": t, "target_bvecs": tb, "mask": m}
    for c, cb, t, tb, m in zip(files.context, files.context_bvecs, files.targets, files.target_bvecs, files.mask)
]
chosen = select_sh_baseline(examples, snakemake.params.settings, snakemake.output[0])
logging.info(
    "%s: order %d, smoothing %g (held-out MAE %.4g on %d validation subjects)",
    snakemake.wildcards.method,
    chosen["sh_order"],
    chosen["smooth"],
    chosen["error"],
    len(examples),
)
