# Figures for the report: the result per test subject, the main comparison (MAE and other metrics vs
# q_in), example slices, FA maps, training curves.


rule plot_result:
    input:
        get_all_metrics,
    output:
        report(
            "results/figures/result.png",
            caption="../report/result.rst",
            category="Results",
            labels={"figure": "result"},
        ),
        # the report's front page includes it (workflow/report/workflow.rst)
        rst="results/report/result_figure.rst",
    log:
        "logs/plot_result/plot.log",
    benchmark:
        "benchmarks/plot_result/plot.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/plot_result.py"


rule plot_metric_vs_q_in:
    input:
        "results/summary.tsv",
    output:
        report(
            "results/figures/{metric}_vs_q_in.png",
            caption="../report/metric_vs_q_in.rst",
            category="Results",
            subcategory="Metrics vs q_in",
            labels={"figure": "{metric} vs q_in"},
        ),
    log:
        "logs/plot_metric_vs_q_in/{metric}.log",
    benchmark:
        "benchmarks/plot_metric_vs_q_in/{metric}.tsv"
    wildcard_constraints:
        metric=design.alternatives(design.VS_Q_IN_FIGURES),
    conda:
        "../../envs/evaluation.yaml"
    params:
        metric=lambda wildcards: design.VS_Q_IN_FIGURES[wildcards.metric],
    script:
        "../scripts/plot_metric_vs_q_in.py"


rule plot_fa_maps:
    input:
        unpack(get_example_dti_inputs),
        predictions=get_example_predictions_list,
    output:
        report(
            "results/figures/fa_maps.png",
            caption="../report/fa_maps.rst",
            category="Results",
            labels={"figure": "FA maps"},
        ),
    log:
        "logs/plot_fa_maps/plot.log",
    benchmark:
        "benchmarks/plot_fa_maps/plot.tsv"
    conda:
        "../../envs/evaluation.yaml"
    params:
        methods=get_example_methods,
        shell=SETTINGS[0][0],
    script:
        "../scripts/plot_fa_maps.py"


rule plot_example_slices:
    input:
        unpack(get_example_context),
        predictions=get_example_predictions_list,
    output:
        report(
            "results/figures/example_slices.png",
            caption="../report/example_slices.rst",
            category="Results",
            labels={"figure": "example slices"},
        ),
    log:
        "logs/plot_example_slices/plot.log",
    benchmark:
        "benchmarks/plot_example_slices/plot.tsv"
    conda:
        "../../envs/evaluation.yaml"
    params:
        methods=get_example_methods,
    script:
        "../scripts/plot_example_slices.py"


rule plot_loss_curves:
    input:
        get_all_histories,
    output:
        report(
            "results/figures/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
            labels={"figure": "loss curves"},
        ),
    log:
        "logs/plot_loss_curves/plot.log",
    benchmark:
        "benchmarks/plot_loss_curves/plot.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/plot_loss_curves.py"
