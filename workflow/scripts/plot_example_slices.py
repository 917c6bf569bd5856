"""Figure: one slice of one target direction, every method and its error (rule plot_example_slices)."""


from dmri_rcnn.study.logs import start_step
from dmri_rcnn.study.metrics_and_figures import plot_example_slices

start_step(snakemake)
plot_example_slices(
    targets=snakemake.input.targets,
    mask=snakemake.input.mask,
    predictions=dict(zip(snakemake.params.methods, snakemake.input.predictions)),
    out_path=snakemake.output[0],
)
