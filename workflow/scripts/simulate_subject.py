"""Simulate one synthetic HCP-like subject (rule simulate_subject)."""

import logging
from pathlib import Path

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.simulation import simulate_subject, write_subject

start_step(snakemake)
settings = snakemake.params.settings
subject = simulate_subject(
    seed=snakemake.params.seed,
    shape=tuple(settings["shape"]),
    voxel_size=settings["voxel_size"],
    n_directions=settings["n_directions"],
    n_b0=settings["n_b0"],
    snr=settings["snr"],
    brain_scale=settings["brain_scale"],
    keep_noiseless=settings["write_noiseless"],
    progress=True,
)
paths = write_subject(subject, Path(snakemake.output.dmri).parent, write_noiseless=settings["write_noiseless"])
logging.info("subject %s (seed %d): %s", snakemake.wildcards.subject, snakemake.params.seed, sorted(paths))
