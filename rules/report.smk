rule aggregate:
    input:
        records=record_paths(),
        peaks=rules.device_peaks.output.peaks,
        manifests=expand("results/models/{model}/manifest.json", model=sorted(config["models"])),
        work=sorted({f"results/reference/{c.model}/b{c.batch}_s{c.seq_len}.json" for c in CELLS}),
    output:
        cells=report("results/tables/cells.csv", category="Tables", labels={"table": "cells"}),
        samples="results/tables/samples.csv",
        rounds="results/tables/rounds.csv",
        speedup=report("results/tables/speedup.csv", category="Tables", labels={"table": "speedup"}),
        best=report("results/tables/best.csv", category="Tables", labels={"table": "best per shape"}),
        environment="results/tables/environment.csv",
        roofline=report("results/tables/roofline.csv", category="Tables", labels={"table": "roofline"}),
        cost=report("results/tables/cost.csv", category="Tables", labels={"table": "cost and break-even"}),
    params:
        baseline=matrix.canonical(config["baseline"]),
        mix="--mix-environments" if config["aggregate"]["mix_environments"] else "",
        margin=config["aggregate"]["practical_margin"],
        out_dir=subpath(output.cells, parent=True),
        # removed with a corrupt record, so that the next run re-measures it instead of keeping this report
        stale=["report/index.html"],
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        "logs/aggregate.log",
    shell:
        "python3 -m scripts.aggregate --baseline {params.baseline:q} --out-dir {params.out_dir:q}"
        " --peaks {input.peaks:q} --manifests {input.manifests:q} --work {input.work:q} {params.mix}"
        " --practical-margin {params.margin}"
        " --stale {params.stale:q} --records {input.records:q}"
        " > {log:q} 2>&1"


rule figures:
    input:
        cells=rules.aggregate.output.cells,
        tables=rules.aggregate.output,
        generation=rules.aggregate_generation.output,
        peaks=rules.device_peaks.output.peaks,
    output:
        relative=report(
            "results/figures/relative_heatmap.png",
            category="Figures",
            labels={"figure": "latency over the fastest backend per shape"},
        ),
        family=report(
            "results/figures/family_latency.png",
            category="Figures",
            labels={"figure": "fastest of each engine family"},
        ),
        roofline=report(
            "results/figures/roofline.png",
            category="Figures",
            labels={"figure": "roofline"},
        ),
        rounds=report(
            "results/figures/round_spread.png",
            category="Figures",
            labels={"figure": "between-round spread"},
        ),
        gpu_busy=report(
            "results/figures/gpu_busy_share.png",
            category="Figures",
            labels={"figure": "GPU busy share"},
        ),
        generation=report(
            "results/figures/generation_tpot.png",
            category="Figures",
            labels={"figure": "generation: time per output token"},
        ),
    params:
        baseline=matrix.canonical(config["baseline"]),
        labels=matrix.canonical(names.labels_of(config)),
        generation_labels=matrix.canonical(names.labels_of(config, "generation")),
        tables_dir=subpath(input.cells, parent=True),
        out_dir=subpath(output.relative, parent=True),
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        "logs/figures.log",
    shell:
        "python3 -m scripts.plot_figures --tables-dir {params.tables_dir:q} --baseline {params.baseline:q}"
        " --peaks {input.peaks:q} --labels {params.labels:q}"
        " --generation-labels {params.generation_labels:q} --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule report:
    input:
        cells=rules.aggregate.output.cells,
        tables=rules.aggregate.output,
        generation=rules.aggregate_generation.output,
        relative=rules.figures.output.relative,
        figures=rules.figures.output,
        peaks=rules.device_peaks.output.peaks,
    output:
        html="report/index.html",
    params:
        config=matrix.canonical(config),
        tables_dir=subpath(input.cells, parent=True),
        figures_dir=subpath(input.relative, parent=True),
        # a rerun compared with an earlier one (rule compare) is this run's reproducibility evidence
        evidence="--evidence compare.html" if config["compare"]["against"] else "",
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        "logs/report.log",
    shell:
        "python3 -m scripts.render_report --tables-dir {params.tables_dir:q} --figures-dir {params.figures_dir:q}"
        " --config {params.config:q} {params.evidence} --out {output.html:q} > {log:q} 2>&1"


rule compare:
    input:
        cells=rules.aggregate.output.cells,
        samples=rules.aggregate.output.samples,
        against=ancient(f"{config['compare']['against']}/cells.csv") if config["compare"]["against"] else [],
    output:
        html="report/compare.html",
        table="results/tables/compare.csv",
    params:
        against=config["compare"]["against"] or "",
        label=config["compare"]["label"] or config["compare"]["against"] or "",
        min_change=config["compare"]["min_change"],
        tables_dir=subpath(input.cells, parent=True),
    conda:
        ENV
    container:
        REPORT_IMAGE
    log:
        "logs/compare.log",
    shell:
        "python3 -m scripts.compare_runs {params.against:q} {params.tables_dir:q} --label-a {params.label:q}"
        " --label-b 'this run' --min-change {params.min_change} --out {output.html:q} --csv {output.table:q}"
        " > {log:q} 2>&1"
