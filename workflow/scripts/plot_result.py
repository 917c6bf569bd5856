"""Figure: each test subject's MAE per method, titled with the verdict (rule plot_result)."""

from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import plot_result

start_step(snakemake)
plot_result(list(snakemake.input), snakemake.output[0], snakemake.output.rst)
