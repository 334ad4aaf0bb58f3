rule aggregate:
    input:
        records=record_paths(),
    output:
        cells=report("results/tables/cells.csv", category="Tables", labels={"table": "cells"}),
        samples="results/tables/samples.csv",
        speedup=report("results/tables/speedup.csv", category="Tables", labels={"table": "speedup"}),
        best=report("results/tables/best.csv", category="Tables", labels={"table": "best per shape"}),
        environment="results/tables/environment.csv",
    params:
        baseline=matrix.canonical(config["baseline"]),
        out_dir="results/tables",
    log:
        "logs/aggregate.log",
    shell:
        "python3 {SCRIPTS}/aggregate.py --baseline {params.baseline:q} --out-dir {params.out_dir:q}"
        " {input.records:q} > {log:q} 2>&1"


rule figures:
    input:
        rules.aggregate.output,
    output:
        heatmap=report(
            "results/figures/speedup_heatmap.png",
            category="Figures",
            labels={"figure": "speedup heatmap"},
        ),
        latency=report(
            "results/figures/latency_vs_seq_len.png",
            category="Figures",
            labels={"figure": "latency vs seq_len"},
        ),
    params:
        baseline=matrix.canonical(config["baseline"]),
        tables_dir="results/tables",
        out_dir="results/figures",
    log:
        "logs/figures.log",
    shell:
        "python3 {SCRIPTS}/plot_figures.py --tables-dir {params.tables_dir:q} --baseline {params.baseline:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule report:
    input:
        tables=rules.aggregate.output,
        figures=rules.figures.output,
    output:
        html="report/index.html",
    params:
        config=matrix.canonical(config),
        tables_dir="results/tables",
        figures_dir="results/figures",
    log:
        "logs/report.log",
    shell:
        "python3 {SCRIPTS}/render_report.py --tables-dir {params.tables_dir:q} --figures-dir {params.figures_dir:q}"
        " --config {params.config:q} --out {output.html:q} > {log:q} 2>&1"
