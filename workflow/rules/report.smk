# Figures for the report: the main comparison, example slices, training curves.


rule plot_error_vs_q_in:
    input:
        "results/summary.tsv",
    output:
        report(
            "results/figures/error_vs_q_in.png",
            caption="../report/error_vs_q_in.rst",
            category="Results",
            labels={"figure": "MAE vs q_in"},
        ),
    log:
        "logs/plot_error_vs_q_in/plot.log",
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/plot_error_vs_q_in.py"


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
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../scripts/plot_loss_curves.py"
