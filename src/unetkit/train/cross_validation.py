"""Cross-validation under one time budget: K folds of one config, each scored on the cases it
never saw, as nnU-Net's five folds.

``cross_validate(config, data_dir, out_dir, folds=K)`` (``unetkit train --cross-validate K``)
trains fold k of a seeded K-fold split (``train.splits``; or the k-th fold of a split file) for
every k into ``RUN/fold_k/`` (an ordinary run folder), predicts each fold's held-out cases with
its ``best.pt`` (``unetkit.train.out_of_fold``) and writes ``RUN/cross_validation.json``: Dice
per case, per fold and pooled over all out-of-fold cases, and the post-processing choice made on
the pooled predictions (``keep_largest: auto``), written into every fold's ``best.pt``.
``unetkit predict RUN`` predicts with the ensemble of the folds (``unetkit.infer.ensemble``).

Time: ``train.time_budget`` is the budget of all folds together, everything counted: planning
(before ``started``), each fold's training, validation and calibration, its held-out
predictions, the summary. Before each fold the time left, less ``SUMMARY_SHARE`` of the budget,
is shared by the folds still to train, less the fold's held-out predictions (``PREDICT_SHARE``
of its share until a fold was timed, then the slowest case so far times its cases times
``PREDICT_MARGIN``). A fold that overran shortens the later ones.

Resume (``unetkit train --resume RUN``): scored folds are skipped, a fold with ``last.pt`` goes on
exactly, the others start, with the saved config and budget (``RUN/cv_state.json``: folds, data
folder, time used; written at every fold boundary and interruption).
Under torchrun every fold trains on all ranks (DDP); rank 0 predicts and writes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetkit.config import Config, apply_values, load_config, parse_duration, save_config
from unetkit.data.dataset import discover_cases
from unetkit.infer.ensemble import CV_STATE, CV_SUMMARY, fold_dir
from unetkit.runtime.atomic import write_text
from unetkit.runtime.checkpoint import TrainingState, load_checkpoint
from unetkit.runtime.device import pick_device
from unetkit.runtime.distributed import barrier, broadcast_object, cleanup, init_distributed
from unetkit.train import out_of_fold
from unetkit.train.fit import TrainResult, fit
from unetkit.train.loop import StepCallback
from unetkit.train.postprocessing import store_postprocessing
from unetkit.train.run_dir import (
    attach_log_file,
    claim_run_dir,
    default_run_dir,
    detach_log_file,
    store_end_of_run,
    write_json,
)
from unetkit.train.signals import Interrupted

log = logging.getLogger("unetkit.train.cross_validation")

SUMMARY_SHARE = 0.01  # of the whole budget, kept for the summary at the end
PREDICT_SHARE = 0.05  # of a fold's share, for its held-out predictions until one was timed
PREDICT_MARGIN = 1.2  # on the measured seconds per held-out case
OOF_FILE = "out_of_fold.json"


@dataclass
class CrossValidationResult:
    """What ``cross_validate`` returns (``summary`` on rank 0 only)."""
    run_dir: Path
    summary: dict[str, Any] | None
    folds: list[TrainResult | None] = field(default_factory=list)  # None: done before resume


def plan_share_s(total_s: float, folds: int) -> float:
    """Seconds each fold is planned for: ``total_s / folds`` less the summary's and the
    held-out predictions' shares (planning itself then comes off every fold's share)."""
    return total_s * (1 - SUMMARY_SHARE) / folds * (1 - PREDICT_SHARE)


def fold_budget_s(total_s: float, spent_s: float, folds_left: int,
                  predict_s: float | None) -> float:
    """Training seconds of the next fold: the time left less the summary's share, shared by
    the ``folds_left`` folds still to train, less the fold's held-out predictions
    (``predict_s``; None: ``PREDICT_SHARE`` of its share)."""
    share = (total_s * (1 - SUMMARY_SHARE) - spent_s) / folds_left
    return share - (PREDICT_SHARE * share if predict_s is None else predict_s)


def check_folds(folds: int) -> None:  # one line, before anything is planned or written
    if folds < 2:
        raise ValueError(f"--cross-validate {folds}: needs at least 2 folds")


def is_cross_validation(path: str | Path) -> bool:  # a folder cross_validate made
    return (Path(path) / CV_STATE).is_file()


def fold_config(config: Config, fold: int, folds: int, budget_s: float | None) -> Config:
    """Fold ``fold``'s config: its split, its share of the time; ``keep_largest: auto`` is
    decided by the cross-validation, on all folds' predictions, so a fold leaves it off."""
    values: dict[str, Any] = {"data.fold": fold, "data.folds": folds}
    if budget_s is not None:
        values["train.time_budget"] = f"{max(budget_s, 1.0):.1f}s"
    if config.infer.postprocess.keep_largest == "auto":
        values["infer.postprocess.keep_largest"] = False
    return apply_values(config, values, source="cross-validation")


def new_run(config: Config, data_dir: str | Path, out_dir: str | Path | None, folds: int,
            extra_files: dict[str, str] | None) -> tuple[Config, Path, dict[str, Any]]:
    """Check the request, claim ``out_dir`` and write the config and the state (rank 0)."""
    check_folds(folds)
    if config.data.fold is not None:
        raise ValueError("--cross-validate trains every fold; --fold (data.fold) trains one: "
                         "give one of them")
    config = apply_values(config, {"data.folds": folds}, source="cross-validation")
    run_dir, _ = claim_run_dir(out_dir or default_run_dir())
    save_config(config, run_dir / "config.yaml")
    for name, text in (extra_files or {}).items():
        write_text(run_dir / name, text)
    state = {"folds": folds, "data_dir": str(Path(data_dir).resolve()), "spent_s": 0.0,
             "trained": []}
    write_json(run_dir / CV_STATE, state)
    return config, run_dir, state


def cross_validate(config: Config | None, data_dir: str | Path | None,
                   out_dir: str | Path | None = None, *, folds: int | None = None,
                   resume: str | Path | None = None,
                   progress: Callable[[int, int], StepCallback | None] | None = None,
                   started: float | None = None, extra_files: dict[str, str] | None = None,
                   check_data: bool = True, changes: dict[str, Any] | None = None
                   ) -> CrossValidationResult:
    """Train and score every fold of one config; write ``RUN/cross_validation.json``.

    Args:
        config: the folds' config; ``train.time_budget`` (if any) is all folds' budget.
        data_dir: the data folder (with ``resume``: default the resumed run's).
        out_dir: the cross-validation folder (default ``runs/<timestamp>``).
        folds: K (at least 2); with ``resume``, the saved number.
        resume: a cross-validation folder to continue (finished folds are skipped).
        progress: called as ``progress(fold, folds)`` before a fold trains; returns the
            fold's ``on_step`` callback (``fit``) or None.
        started: ``time.monotonic()`` when the budget started (planning included).
        extra_files: ``{name: text}`` written into the folder (``plan.yaml``).
        check_data: run the data doctor before the first fold trains.
        changes: with ``resume``, options the user gave: reported as ignored.

    Raises:
        Interrupted: SIGINT/SIGTERM during a fold; its ``last.pt`` holds the step boundary and
            ``--resume RUN`` continues there.
        ValueError: fewer than two folds, ``data.fold`` set, or a split that cannot be made.
    """
    started = time.monotonic() if started is None else started
    if resume is not None:
        run_dir = Path(resume)
        if not is_cross_validation(run_dir):
            raise ValueError(f"--resume {run_dir}: not a cross-validation folder (no {CV_STATE})")
        state = json.loads((run_dir / CV_STATE).read_text())
        config = load_config(run_dir / "config.yaml")
        data_dir, folds = data_dir or state["data_dir"], int(state["folds"])
        if any(v is not None for v in (changes or {}).values()):
            log.warning("resume continues the saved cross-validation, its config and budget; "
                        "ignored: %s", ", ".join(k for k, v in changes.items() if v is not None))
    elif config is None or data_dir is None or folds is None:
        raise ValueError("cross_validate: a config, a data folder and folds are needed unless "
                         "resuming")
    cases = {c.case_id: c for c in discover_cases(data_dir, roi_dir=config.data.roi_dir)}
    splits = [out_of_fold.held_out(config, list(cases), k, folds)  # errors first
              for k in range(folds)]
    info = init_distributed(pick_device(config.train.device))
    try:
        if resume is None:  # rank 0 claims the folder; a refusal stops every rank
            made: Any = None
            try:
                made = new_run(config, data_dir, out_dir, folds, extra_files) if info.is_main \
                    else None
            except (ValueError, OSError) as error:
                made = error
            made = broadcast_object(made, info)
            if isinstance(made, Exception):
                raise made
            config, run_dir, state = made
        handler = attach_log_file(run_dir) if info.is_main else None
        try:
            return _run_folds(config, Path(data_dir), run_dir, state, info, progress,
                              started - float(state["spent_s"]), check_data, (cases, splits))
        finally:
            if handler is not None:
                detach_log_file(handler)
    finally:
        cleanup(info)


def _run_folds(config: Config, data_dir: Path, run_dir: Path, state: dict[str, Any],
               info: Any, progress: Callable[[int, int], StepCallback | None] | None,
               clock: float, check_data: bool, split: tuple[dict[str, Any], list[list[str]]]
               ) -> CrossValidationResult:
    """Every fold in turn (skipping finished ones), then the summary (rank 0 writes)."""
    (cases, splits), folds = split, int(state["folds"])
    labels, ignore, regions = out_of_fold.data_labels(config, data_dir, cases)
    decide = config.infer.postprocess.keep_largest == "auto"
    total = parse_duration(config.train.time_budget) if config.train.time_budget else None

    def save_state() -> None:
        state["spent_s"] = time.monotonic() - clock
        if info.is_main:
            write_json(run_dir / CV_STATE, state)

    results: list[TrainResult | None] = []
    scored: list[dict[str, Any]] = []
    for k in range(folds):
        path = fold_dir(run_dir, k)
        if (path / OOF_FILE).is_file():
            scored.append(json.loads((path / OOF_FILE).read_text()))
            results.append(None)
            continue
        result = None
        if k not in state["trained"]:
            budget = None if total is None else fold_budget_s(
                total, time.monotonic() - clock, folds - k, _predict_estimate(scored, splits[k]))
            log.log(logging.WARNING if budget is not None and budget < 1 else logging.INFO,
                     "cross-validation: fold %d of %d, %d held-out cases%s", k + 1, folds,
                     len(splits[k]), "" if budget is None else f", {budget:.1f} s to train"
                     + (" (the budget is spent: 1 s)" if budget < 1 else ""))
            try:
                on_step = progress(k, folds) if progress is not None else None
                result = _train_fold(fold_config(config, k, folds, budget), data_dir, path,
                                     on_step, check_data and not state["trained"])
            except (Interrupted, KeyboardInterrupt):  # the time used so far counts on resume
                save_state()
                raise
            state["trained"].append(k)
            save_state()
        results.append(result)
        oof = None
        if info.is_main:
            oof = out_of_fold.score_fold(path / "best.pt", [cases[c] for c in splits[k]],
                                         sorted(labels), decide=decide,
                                         device=config.train.device, ignore=ignore)
            write_json(path / OOF_FILE, oof)
        barrier(info)
        scored.append(broadcast_object(oof, info))
        save_state()
    names = out_of_fold.scored_names(labels, regions)
    summary = _summarize(config, run_dir, data_dir, scored, names, decide, total,
                         time.monotonic() - clock) if info.is_main else None
    return CrossValidationResult(run_dir, summary, results)


def _predict_estimate(scored: list[dict[str, Any]], cases: list[str]) -> float | None:
    """Seconds to predict ``cases``: the slowest fold's seconds per case so far, with a
    margin; None before any fold was timed."""
    rates = [s["seconds"] / max(len(s["cases"]), 1) for s in scored]
    return max(rates) * len(cases) * PREDICT_MARGIN if rates else None


def _train_fold(config: Config, data_dir: Path, path: Path, on_step: StepCallback | None,
                check_data: bool) -> TrainResult:
    """Train (or continue) one fold in ``path``; a folder left without ``last.pt`` (killed
    before the first epoch ended) is kept aside as ``fold_k.unfinished[-n]``."""
    if (path / "last.pt").is_file():
        return fit(None, data_dir, resume=path, on_step=on_step)
    if path.exists():
        aside, n = path.with_name(f"{path.name}.unfinished"), 1
        while aside.exists():
            aside, n = path.with_name(f"{path.name}.unfinished-{n}"), n + 1
        path.rename(aside)
        log.warning("cross-validation: %s held no last.pt; kept as %s, the fold starts again",
                    path, aside)
    return fit(config, data_dir, path, on_step=on_step, started=time.monotonic(),
               check_data=check_data)


def _summarize(config: Config, run_dir: Path, data_dir: Path, scored: list[dict[str, Any]],
               names: dict[int, str], decide: bool, total: float | None,
               spent_s: float) -> dict[str, Any]:
    """Pool the folds' scores (``names``: the foreground labels or regions scored), store the
    post-processing choice in every fold's ``best.pt``, write ``cross_validation.json``."""
    foreground = [str(v) for v in names]
    summary = out_of_fold.pooled_summary(scored, foreground, decide,
                                         config.infer.postprocess.keep_largest)
    for k, fold in enumerate(summary["per_fold"]):
        best = fold_dir(run_dir, k) / "best.pt"
        trained = TrainingState.from_checkpoint(load_checkpoint(best))
        fold.update(epochs=trained.epoch, fold_val_dice=trained.best_metric)
        if decide:
            record = {**summary["postprocessing"], "source": "cross-validation"}
            store_end_of_run(best.parent, store_postprocessing, record, trained.step,
                             "postprocessing.json")
    record = {"folds": len(scored), "data": str(data_dir),
              "labels": {str(v): name for v, name in names.items()}, **summary,
              "time": {"budget_s": total, "spent_s": spent_s}}
    write_json(run_dir / CV_SUMMARY, record)
    log.info("cross-validation: pooled out-of-fold mean Dice %s over %d cases; %s",
             record["mean_dice"], len(record["per_case"]), record["postprocessing"]["reason"])
    return record


__all__ = ["CrossValidationResult", "cross_validate", "fold_budget_s", "is_cross_validation",
           "plan_share_s"]
