"""The training progress bar of ``unetkit train`` and ``unetkit demo`` (rank 0 only)."""

from __future__ import annotations

from unetkit.cli.app import err_console


class TrainProgress:
    """A rich progress bar fed by ``fit``'s ``on_step`` callback (rank 0 only).

    It appears with the first step's numbers: before it nothing is known (no epoch count, no
    loss), and a bar showing ``0/?`` and a zero loss would say something false. Under a time
    budget the bar fills with the budget's time, which never moves, and the epoch count is
    shown as the estimate it is (``~62``); without one it counts steps.
    """

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
            TextColumn("{task.fields[count]}"), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[dice]}"), TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"), console=err_console, transient=False,
        )
        self.task = self.bar.add_task("train", total=None, epoch="-", count="", loss="-",
                                      dice="-", eta="-")
        self.first: tuple[float, int] | None = None

    def __call__(self, info: dict) -> None:
        import time

        from unetkit.train.budget import format_seconds

        now = time.monotonic()
        if self.first is None:
            self.first = (now, info["step"])
            self.bar.start()
        eta = info["eta_s"]  # the time budget's remainder, when there is one
        if eta is None and info["steps_left"] is not None and info["step"] > self.first[1]:
            per_step = (now - self.first[0]) / (info["step"] - self.first[1])
            eta = per_step * info["steps_left"]
        self.bar.update(self.task, **bar_fields(info), loss=f"{info['loss']:.4f}",
                        eta="-" if eta is None else format_seconds(max(eta, 0.0)))

    def finish(self, best: float | None = None) -> None:
        """Show the bar's last state (nothing when no step ran, or when shown already), with
        the run's ``best`` validation Dice when it ended (the last validation follows the last
        step)."""
        if self.first is None:
            return
        task = self.bar.tasks[0]
        final = {"dice": f"best Dice {best:.4f}"} if best is not None else {}
        self.bar.update(self.task, total=task.completed, eta="0.0s", **final)
        self.bar.stop()
        self.first = None


def bar_fields(info: dict) -> dict:
    """Progress and wording of one step: time of the budget or steps, ``epoch 3/~62`` (an
    estimate) or ``3/10``, ``?`` until a budget planned; ``best Dice``, or why there is none."""
    from unetkit.train.budget import format_seconds

    epochs = info["epochs"]
    of = "?" if epochs is None else f"~{epochs}" if info.get("estimated") else str(epochs)
    dice = ("no validation cases" if not info.get("validates", True) else "Dice -"
            if info["dice"] is None else f"best Dice {info['dice']:.4f}")
    fields = {"epoch": f"{info['epoch'] + 1}/{of}", "dice": dice}
    if info.get("budget_s"):
        elapsed, budget = min(info["elapsed_s"], info["budget_s"]), info["budget_s"]
        return {**fields, "completed": elapsed, "total": budget,
                "count": f"{format_seconds(elapsed)} of {format_seconds(budget)}"}
    total = info["total_steps"]
    return {**fields, "completed": info["step"], "total": total,
            "count": f"step {info['step']}/{'?' if total is None else total}"}
