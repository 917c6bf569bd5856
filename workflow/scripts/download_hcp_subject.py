"""Check a subject's files fetched from S3 and move them under resources/ (rule download_hcp_subject).

Snakemake's S3 storage plugin has already downloaded the inputs; each is read to its end and checked
against the others, and an error names the S3 key of the bad object.
"""

import logging

from dmri_rcnn.sources import copy_checked_hcp_subject
from dmri_rcnn.study.logs import start_step

start_step(snakemake)
keys = ("dmri", "bvals", "bvecs", "mask")
copy_checked_hcp_subject(
    sources={key: snakemake.input[key] for key in keys},
    targets={key: snakemake.output[key] for key in keys},
    origins=snakemake.params.urls,
)
logging.info("subject %s: 4 files checked and stored", snakemake.wildcards.subject)
