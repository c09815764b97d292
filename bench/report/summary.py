"""The report's summary: the recommended trial, its test figures and what it beats."""

from __future__ import annotations

from bench.core import metrics, records
from bench.report.columns import SEED_SPACE, architecture
from bench.report.compare import PERCENTAGE_POINTS
from bench.report.loading import NO_TRIAL, Context, Run, best_of, by_creation, dataset_of
from bench.report.render import Block, Heading, Paragraph


def section(ctx: Context) -> list[Block]:
    """The winner, its test accuracy and loss with 95% intervals, and what it beats."""
    status = ctx.df["status"]
    finished = int((status == records.STATUS_COMPLETED).sum())
    failed = int((status == records.STATUS_FAILED).sum())
    counts = f"{finished} trial(s) finished, {failed} failed, in {len(ctx.runs)} run(s)."
    blocks: list[Block] = [Heading("Summary", 2), Paragraph(counts)]
    if ctx.choice is None:
        why = "no trial was recorded" if status.empty else f"all {failed} trial(s) failed"
        text = f"{NO_TRIAL}: {why}. There is no configuration to recommend."
        return [*blocks, Paragraph(text)]
    run, record = ctx.choice
    sentences = [_choice_sentence(ctx)]
    if ctx.confirmed_seeds and ctx.single is not None and ctx.single[1] is not record:
        sentences.append(_single_sentence(*ctx.single))
    sentences.append(_test_sentence(ctx, record))
    seeds = [r for r in run.confirmed if r["trial_id"] == record["trial_id"]]
    if seeds:
        sentences.append(_confirmed_sentence(seeds))
    sentences.append(_baseline_sentence(ctx, record))
    fastest = _fastest_sentence(ctx, record)
    if fastest:
        sentences.append(fastest)
    if len(ctx.runs) > 1:
        sentences.append(_previous_run_sentence(ctx.runs))
    sentences += _other_datasets_sentences(ctx.runs)
    return blocks + [Paragraph(text) for text in sentences]


def _choice_sentence(ctx: Context) -> str:
    """Which configuration to release, and the rule that chose it."""
    run, record = ctx.choice
    what = (
        f"Recommended configuration to release: trial {record['trial_id']} of run {run.name} "
        f"({architecture(record)})."
    )
    seeds = ctx.confirmed_seeds
    if not seeds:
        return (
            f"{what} It is chosen by VALIDATION accuracy, the best of all finished trials; the "
            "test set is reported, never used to choose (details below)."
        )
    mean = sum(r["val_accuracy"] for r in seeds) / len(seeds)
    return (
        f"{what} It is chosen by the confirmation: the best mean VALIDATION accuracy "
        f"({mean:.4f}) over {len(seeds)} retraining(s) with fresh seeds, the search's own trial "
        "left out since it was picked for being lucky; the test set is reported, never used "
        "to choose (details below)."
    )


def _single_sentence(run: Run, record: dict) -> str:
    """The single-trial pick, where the confirmed one differs from it."""
    return (
        f"The single trial with the best validation accuracy is another: trial "
        f"{record['trial_id']} of run {run.name} ({architecture(record)}; validation "
        f"{record['val_accuracy']:.4f}, test {record['test_accuracy']:.4f}), which one lucky "
        f"draw may flatter; `bench export {run.name} --single-trial` ships it instead."
    )


def _other_datasets_sentences(runs: list[Run]) -> list[str]:
    """With runs on several datasets: the recommendation is for the first run's, and each
    other dataset's best trial is named apart, never ranked against it."""
    dataset = dataset_of(runs[0])
    others = sorted({dataset_of(run) for run in runs} - {dataset})
    sentences = []
    for other in others:
        names = ", ".join(run.name for run in runs if dataset_of(run) == other)
        best = best_of(runs, other)
        pick = "none finished a trial"
        if best is not None:
            run, record = best
            pick = (
                f"their best by validation is trial {record['trial_id']} of run {run.name} "
                f"(validation {record['val_accuracy']:.4f}, test {record['test_accuracy']:.4f})"
            )
        sentences.append(
            f"Runs on {other} ({names}) are left out of the recommendation, which is for "
            f"{dataset}, the first run's dataset: accuracy on one dataset does not rank "
            f"configurations on another; {pick}."
        )
    return sentences


def _test_sentence(ctx: Context, record: dict) -> str:
    from bench.core import stats  # scipy and statsmodels load only when there is a winner

    measured = f"Test accuracy {record['test_accuracy']:.4f}, test loss {record['test_loss']:.4f}"
    if isinstance(ctx.predictions, str):
        return f"{measured} (no intervals: {ctx.predictions})."
    y_true = ctx.predictions["y_true"]
    total = len(y_true)
    low, high = stats.accuracy_interval(int((ctx.predictions["y_pred"] == y_true).sum()), total)
    losses = metrics.per_image_loss(ctx.predictions["probs"], y_true)
    loss_low, loss_high = stats.mean_bootstrap_interval(losses)
    return (
        f"{measured}. 95% intervals for this model on {total:,} test images: accuracy "
        f"{low:.4f} to {high:.4f} (Wilson), loss {loss_low:.4f} to {loss_high:.4f} (bootstrap)."
    )


def _confirmed_sentence(seeds: list[dict]) -> str:
    from bench.core import stats

    accuracy = stats.mean_interval([r["test_accuracy"] for r in seeds])
    loss = stats.mean_interval([r["test_loss"] for r in seeds])
    if len(seeds) < 2:
        return (
            f"Retrained with 1 more seed (bench confirm): test accuracy {accuracy['mean']:.4f}, "
            f"loss {loss['mean']:.4f}; more seeds give an interval."
        )
    return (
        f"Retrained with {len(seeds)} more seeds (bench confirm): mean test accuracy "
        f"{accuracy['mean']:.4f} (95% CI {accuracy['low']:.4f} to {accuracy['high']:.4f}), "
        f"mean test loss {loss['mean']:.4f} (95% CI {loss['low']:.4f} to {loss['high']:.4f})."
    )


# Six latency measurements of one cnn_plus model on an idle 2-core machine ranged from 1.32 to
# 1.85 ms: a configuration counts as faster only by more than that.
FASTER_BY = 1.5


def _fastest_sentence(ctx: Context, record: dict) -> str | None:
    """The fastest configuration (CPU latency at batch 1) whose validation accuracy is within
    the winner's 95% interval; None when the winner's latency was not measured."""
    from bench.core import stats

    latency = (record.get("inference") or {}).get("latency_ms")
    if latency is None:
        return None
    images = (record.get("dataset") or {}).get("val") or 0
    if not images:
        return None
    correct = round(record["val_accuracy"] * images)
    low, high = stats.accuracy_interval(correct, images)
    close = [
        (run, r)
        for run, r in _records_of_the_choice_dataset(ctx)
        if r["status"] == records.STATUS_COMPLETED
        and (r.get("inference") or {}).get("latency_ms") is not None
        and r["val_accuracy"] >= low
    ]
    run, fastest = min(close, key=lambda pair: pair[1]["inference"]["latency_ms"])
    cost = fastest["inference"]
    interval = f"{low:.4f} to {high:.4f}, Wilson on {images:,} validation images"
    side = (
        " Latencies were measured while other workers of the run trained on the same machine: "
        "compare them with care."
        if any(r["inference"].get("beside_training") for _, r in close)
        else ""
    )
    if fastest is record or latency / cost["latency_ms"] < FASTER_BY:
        return (
            f"No configuration within the winner's 95% validation interval ({interval}) is "
            f"faster on this CPU by {FASTER_BY}x or more (repeated timings of one model differ "
            f"by up to a third): {latency:.2f} ms per image at batch 1 on "
            f"{record['inference']['threads']} thread(s).{side}"
        )
    return (
        f"As good, {latency / cost['latency_ms']:.1f}x faster: trial {fastest['trial_id']} of "
        f"run {run.name} ({architecture(fastest)}) has validation accuracy "
        f"{fastest['val_accuracy']:.4f}, within the winner's 95% interval ({interval}), and "
        f"takes {cost['latency_ms']:.2f} ms per image at batch 1 against {latency:.2f} ms "
        f"({cost['threads']} thread(s)).{side}"
    )


def _records_of_the_choice_dataset(ctx: Context) -> list[tuple[Run, dict]]:
    """(run, record) of every run on the recommended trial's dataset: the only ones to compare
    it with."""
    dataset = dataset_of(ctx.choice[0])
    return [(run, r) for run in ctx.runs if dataset_of(run) == dataset for r in run.records]


def _baseline_sentence(ctx: Context, record: dict) -> str:
    seeds = [r for _, r in _records_of_the_choice_dataset(ctx) if r.get("space") == SEED_SPACE]
    baseline = records.best_by_validation(seeds)
    if baseline is None:
        return "No finished seed baseline trial in these runs, so there is no baseline comparison."
    if baseline is record:
        return "The recommended configuration is the seed baseline itself."
    gain = (record["test_accuracy"] - baseline["test_accuracy"]) * PERCENTAGE_POINTS
    return (
        f"Against the seed baseline (trial {baseline['trial_id']}): test accuracy "
        f"{record['test_accuracy']:.4f} vs {baseline['test_accuracy']:.4f}, "
        f"{gain:+.2f} percentage points."
    )


def _previous_run_sentence(runs: list[Run]) -> str:
    previous, latest = by_creation(runs)[-2:]
    if dataset_of(previous) != dataset_of(latest):
        return (
            f"The previous run {previous.name} searched {dataset_of(previous)}, the latest "
            f"run {latest.name} {dataset_of(latest)}: their accuracies do not compare."
        )
    best, before = (records.best_by_validation(run.records) for run in (latest, previous))
    if best is None or before is None:
        return f"Against the previous run {previous.name}: one of the two has no finished trial."
    gain = (best["test_accuracy"] - before["test_accuracy"]) * PERCENTAGE_POINTS
    return (
        f"Against the previous run {previous.name}, the latest run {latest.name}'s pick has test "
        f"accuracy {best['test_accuracy']:.4f} vs {before['test_accuracy']:.4f} ({gain:+.2f} "
        f"points), test loss {best['test_loss']:.4f} vs {before['test_loss']:.4f}."
    )
