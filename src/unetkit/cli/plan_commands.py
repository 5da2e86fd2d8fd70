"""``unetkit plan``: fingerprint a data set and plan a run for a time budget; the tables that
``unetkit train`` prints when it plans (and, with ``--init``, what it loaded). ``unetkit
config``: the default config as commented YAML."""

from __future__ import annotations

import typer

from unetkit.cli.app import app, console, err_console, fail, log_to_console  # noqa: F401


def print_fingerprint(fp) -> None:  # noqa: ANN001 - unetkit.plan.fingerprint.Fingerprint
    """The fingerprint as a two-column table."""
    from rich.markup import escape
    from rich.table import Table

    def fmt(values) -> str:  # noqa: ANN001
        return "x".join(f"{float(v):g}" for v in values)

    table = Table(title="fingerprint", show_header=False)
    rows = [("cases", str(fp.cases)), ("dimensions / channels", f"{fp.spatial_dims}D, "
            f"{fp.channels} channel(s)"), ("modality", fp.modality),
            ("median size", fmt(fp.median_shape)), ("median spacing", fmt(fp.median_spacing))]
    for channel, stats in enumerate(fp.foreground_intensity):
        if stats:
            rows.append((f"foreground ch{channel}", f"p0.5 {stats['p0.5']:.4g}, median "
                         f"{stats['p50']:.4g}, p99.5 {stats['p99.5']:.4g}"))
    for label, share in fp.label_fractions.items():
        name = (fp.labels or {}).get(label, f"label {label}")
        rows.append((escape(str(name)), f"{100 * share:.2f}% of voxels"))
    rows += [("foreground width", f"{fp.foreground_width:.1f} voxels"),
             ("objects per case", f"{fp.objects_per_case:g}"),
             ("enclosed background", f"{100 * fp.enclosed_fraction:.0f}%")]
    if fp.offset is not None:
        rows.append(("mask offset", f"{fp.offset} voxels"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def print_plan(plan) -> None:  # noqa: ANN001 - unetkit.plan.planner.Plan
    """Every decision with its reason, and the timed candidates."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="plan")
    for column in ("setting", "value", "why"):
        table.add_column(column, overflow="fold")
    for decision in plan.decisions:
        table.add_row(decision.field, escape(str(decision.value)), escape(decision.reason))
    console.print(table)
    for c in plan.candidates:
        mark = "  <- chosen" if c.chosen else ""
        console.print(f"  candidate {c.describe()}{mark}", highlight=False)


def print_init(report: dict) -> None:
    """What ``--init`` loaded: one row per layer (``unetkit.train.init_weights``)."""
    from rich.markup import escape
    from rich.table import Table

    def shape(value) -> str:  # noqa: ANN001
        return "-" if value is None else "x".join(map(str, value))

    table = Table(title=f"--init {escape(report['checkpoint'])}")
    for column in ("layer", "", "shape", "checkpoint", "parameters", "why not loaded"):
        table.add_column(column, overflow="fold")
    marks = {"loaded": "[green]loaded[/]", "fresh": "[yellow]fresh[/]", "unused": "unused"}
    for row in report["layers"]:
        table.add_row(escape(row["layer"]), marks[row["status"]], shape(row["shape"]),
                      shape(row["checkpoint_shape"]), f"{row['parameters']:,}",
                      escape(row["reason"]))
    console.print(table)
    console.print(f"loaded {len(report['loaded'])} layers, {report['parameters_loaded']:,} of "
                  f"{report['parameters']:,} parameters; fresh: {len(report['fresh'])}; "
                  f"normalisation {escape(report['normalization'])}", highlight=False)


@app.command()
def plan(
    data_dir: str = typer.Argument(..., help="data folder (images/ + masks/, or nnU-Net "
                                   "imagesTr/ + labelsTr/ with dataset.json)"),
    time_budget: str = typer.Option(None, "--time", help="the training budget, e.g. 15m; the "
                                    "network is sized to what it buys on this machine"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps: "
                               "where candidates are timed (and training will run)"),
    out: str = typer.Option(None, "--out", "-o", help="write the planned config here (YAML "
                            "for unetkit train --config)"),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                        help="fix a config field (repeatable); the candidates "
                                        "are timed with it, as unetkit train --set does"),
    init: str = typer.Option(None, "--init", help="fine-tuning: a checkpoint or run folder "
                             "whose network and input normalisation the plan keeps"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out file"),
) -> None:
    """Fingerprint a data set and plan a run: every decision printed with its reason."""
    from rich.markup import escape

    from unetkit.config import ConfigError, parse_duration
    from unetkit.data.dataset import DatasetError
    from unetkit.plan.init_plan import with_init
    from unetkit.plan.plan_types import check_plan_file
    from unetkit.plan.planner import make_plan
    from unetkit.plan.user import UserChoices

    try:
        if out:  # before the timing: an existing config is never replaced by surprise
            check_plan_file(out, data_dir, force)
        if time_budget is not None:
            parse_duration(time_budget, "--time")
        user = UserChoices({"train.time_budget": time_budget, "train.init": init}, overrides)
        user.check()  # an invalid --set fails now, not after the timing
        user = with_init(user, data_dir)
        result = make_plan(data_dir, time_budget, device=device, user=user,
                           progress=lambda line: err_console.print(f"timing {line}"))
    except (ConfigError, DatasetError, ValueError) as error:
        fail(escape(str(error)), code=2)
    print_fingerprint(result.fingerprint)
    print_plan(result)
    if out:
        try:
            written = result.write(out)
        except OSError as error:  # disk full: no partial file left
            fail(escape(str(error)))
        console.print(f"wrote {written}: unetkit train --data {escape(data_dir)} "
                      f"--config {escape(out)}")


@app.command("config")
def config_command(
    out: str = typer.Option(None, "--out", "-o", help="write the YAML to this file instead of "
                            "printing it"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out file"),
) -> None:
    """Print the full default config as commented YAML: every field, its default and what it
    does (a starting point for unetkit train --config)."""
    from rich.markup import escape

    from unetkit.config import commented_yaml, write_commented_yaml

    if out is None:
        typer.echo(commented_yaml(), nl=False)
        return
    try:
        path = write_commented_yaml(out, overwrite=force)
    except OSError as error:  # FileExistsError included
        fail(escape(str(error)), code=2 if isinstance(error, FileExistsError) else 1)
    console.print(f"wrote {escape(str(path))}: unetkit train --data DATA --config "
                  f"{escape(str(path))}", highlight=False)
