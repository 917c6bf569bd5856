"""Figure: FA from acquired vs predicted targets for the example subject (rule plot_fa_maps)."""


from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import plot_fa_maps

start_step(snakemake)
plot_fa_maps(
    files=dict(snakemake.input.items()),
    predictions=dict(zip(snakemake.params.methods, snakemake.input.predictions)),
    shell=snakemake.params.shell,
    out_path=snakemake.output[0],
)
