"""One summary of a failure, whoever caught it: the local executor, the Ray executor or the device worker."""

from __future__ import annotations

from executor_tasks import raise_noted

from edgebench.errors import SUMMARY_CHARS, summarize
from edgebench.executor.inprocess import run_task
from edgebench.executor.local import LocalExecutor
from edgebench.executor.tasks import call_task


def test_summary_is_type_and_message_folded_on_one_line_without_notes() -> None:
    exc = ValueError("invalid dimensions for input\n index: 1 Got: 3 Expected: 1")
    exc.add_note("while exporting conv2")
    assert summarize(exc) == "ValueError: invalid dimensions for input index: 1 Got: 3 Expected: 1"


def test_an_empty_message_is_the_type_alone_and_a_long_one_is_cut() -> None:
    assert summarize(RuntimeError()) == "RuntimeError"
    assert summarize(KeyError("")) == "KeyError: ''"  # KeyError shows its key, even an empty one
    long = summarize(OSError("x" * 1000))
    assert long.startswith("OSError: xxx") and long.endswith(" …") and len(long) <= len("OSError: ") + SUMMARY_CHARS


def test_in_process_and_warm_worker_failures_are_summarised_alike() -> None:
    expected = summarize(_caught_noted())
    assert run_task(raise_noted, ("first line\nsecond line",)).error == expected
    with LocalExecutor(workers=1) as executor:
        (result,) = executor.run([call_task("fails", "build", raise_noted, "first line\nsecond line")])
    assert result.error == expected == "ValueError: first line second line"
    assert "a note added on the way up" in (result.detail or "")  # the note stays in the traceback


def _caught_noted() -> BaseException:
    try:
        raise_noted("first line\nsecond line")
    except ValueError as exc:
        return exc
    raise AssertionError("raise_noted did not raise")
