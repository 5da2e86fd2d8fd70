"""``unetkit check`` (the data doctor) and ``unetkit info`` (a model's stages)."""

from __future__ import annotations

import typer

from unetkit.cli.app import app, console, err_console, fail, log_to_console  # noqa: F401


@app.command()
def info(
    model: str = typer.Argument("unet", help="unet | resunet | attention_unet | unetplusplus"),
    input_size: str = typer.Option(
        None, "--input-size", "-s", help="spatial size, e.g. 256,256 (default 256 per axis in 2D, "
        "96 in 3D)"
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", metavar="KEY=VALUE",
        help="model option key=value (repeatable), e.g. -o widths=[8,16,32]"
    ),
    spatial_dims: int = typer.Option(None, "--spatial-dims", help="2 or 3"),
    in_channels: int = typer.Option(None, "--in-channels", help="image channels"),
    out_channels: int = typer.Option(None, "--out-channels",
                                     help="output channels (classes)"),
    base_width: int = typer.Option(None, "--base-width",
                                   help="channels of the first stage (doubled per stage)"),
    depth: int = typer.Option(None, "--depth", help="number of poolings, 1..6"),
    norm: str = typer.Option(None, "--norm", help="none | batch | instance | group"),
    upsample: str = typer.Option(None, "--upsample", help="transpose | interpolate"),
    padding: str = typer.Option(None, "--padding", help="same | valid"),
    deep_supervision: bool = typer.Option(False, "--deep-supervision",
                                          help="add the auxiliary deep-supervision heads"),
) -> None:
    """Show a model's stages: output shapes, parameters, FLOPs and activation memory."""
    from rich.markup import escape
    from rich.table import Table

    from unetkit.config import parse_options, parse_size
    from unetkit.nn import build_model, model_summary
    from unetkit.nn.summary import summary_table
    from unetkit.runtime import model_checks

    typed = dict(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                 base_width=base_width, depth=depth, norm=norm, upsample=upsample, padding=padding)
    try:
        options = parse_options(option)
        options.update({k: v for k, v in typed.items() if v is not None})
        if deep_supervision:
            options["deep_supervision"] = True
        too_large = model_checks.too_large(model_checks.skeleton(model, options), options)
        if too_large:  # laid out on the meta device: nothing allocated yet
            fail(escape(f"--base-width/--option: {too_large}"), code=2)
        net = build_model(model, **options)
        size = parse_size(input_size, "--input-size") if input_size else \
            [256 if net.spatial_dims == 2 else 96]
        size = tuple(size * net.spatial_dims if len(size) == 1 else size)
        rows = model_summary(net, size)
    except ValueError as error:  # ConfigError included
        fail(escape(str(error)))
    table = Table(title=f"{type(net).__name__} {net.spatial_dims}D · widths "
                  f"{'-'.join(map(str, net.widths))} · norm {net.options.norm} · padding "
                  f"{net.padding} · input {net.in_channels}×{'×'.join(map(str, size))}")
    for column, justify in (("stage", "left"), ("output", "right"), ("params", "right"),
                            ("GFLOPs", "right"), ("act. MB", "right"), ("note", "left")):
        table.add_column(column, justify=justify)
    lines = summary_table(rows)
    for index, line in enumerate(lines[:-1]):
        table.add_row(*line, end_section=index == len(lines) - 2)
    table.add_row(*lines[-1], style="bold")
    console.print(table)
    total = lines[-1]
    console.print(f"[bold]{total[2]}[/] parameters · [bold]{total[3]}[/] GFLOPs (2 × multiply-adds)"
                  f" · [bold]{total[4]}[/] MB of fp32 stage outputs per sample")


@app.command()
def check(
    data_dir: str = typer.Argument(..., help="folder with images/ + masks/ (or nnU-Net imagesTr/)"),
    labels: str | None = typer.Option(
        None, "--labels", help="declared label values, e.g. 0,1,2 (default: dataset.json/masks)"
    ),
    offset: bool = typer.Option(False, "--offset", help="also measure how far the masks lie "
                                "off the images (sub-voxel; for data.image_offset)"),
    roi: str | None = typer.Option(None, "--roi", help="folder of regions of interest, relative "
                                   "to DATA_DIR or absolute (default: roi/ or fov/ if present)"),
    ignore_label: int | None = typer.Option(
        None, "--ignore-label", help="mask value of unlabelled pixels (sparse annotations; "
        "default: the label named ignore in dataset.json): the labelled share of each case is "
        "reported"),
) -> None:
    """Check a data folder: report ALL problems (each naming its file) and summarise it."""
    from rich.markup import escape
    from rich.table import Table

    from unetkit.data.doctor import check_dataset

    declared = None
    if labels:
        try:
            declared = [int(v) for v in labels.split(",") if v.strip()]
        except ValueError:
            fail(f"--labels {labels!r}: expected comma-separated integers, e.g. 0,1")
    report = check_dataset(data_dir, labels=declared, roi_dir=roi, ignore_label=ignore_label)
    for message in report.errors:
        console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    for message in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True, highlight=False)
    table = Table(title=f"data set {data_dir}", show_header=False)
    for name, value in report.summary_rows():
        table.add_row(escape(name), escape(value))
    console.print(table)
    if offset and report.ok:
        _print_offsets(data_dir)
    verdict = "[bold green]OK[/]" if report.ok else "[bold red]NOT OK[/]"
    console.print(f"{verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if not report.ok:
        raise typer.Exit(1)


def _print_offsets(data_dir: str) -> None:
    from unetkit.data.offset import folder_offsets, median_offset

    offsets = folder_offsets(data_dir)
    for case_id, values in offsets.items():
        console.print(f"  {case_id}: mask offset {[round(v, 2) for v in values]} voxels")
    suggested = median_offset(list(offsets.values()))
    console.print(f"masks lie {suggested} voxels off the images (median of {len(offsets)} "
                  f"cases): set data.image_offset to this (or auto) if the cases agree")
