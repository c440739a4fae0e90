"""Per-OS process choices, by parameter (CI has no Windows or macOS machine)."""

from __future__ import annotations

import signal

import pytest

from app.processes import (
    CREATE_NEW_PROCESS_GROUP,
    CREATE_NO_WINDOW,
    _die_with_parent,
    grace_after_asking,
    spawn_options,
    termination,
)


@pytest.mark.parametrize("os_name", ["linux", "darwin", "windows"])
def test_children_get_their_own_process_group(os_name: str) -> None:
    options = spawn_options(os_name, tie_to_parent=True)  # type: ignore[arg-type]
    if os_name == "windows":
        assert options == {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    else:
        assert options["start_new_session"] is True


@pytest.mark.parametrize(("os_name", "has_pdeathsig"), [("linux", True), ("darwin", False), ("windows", False)])
def test_only_linux_ties_the_child_to_us_with_pdeathsig(os_name: str, has_pdeathsig: bool) -> None:
    options = spawn_options(os_name, tie_to_parent=True)  # type: ignore[arg-type]
    assert (options.get("preexec_fn") is _die_with_parent) is has_pdeathsig
    untied = spawn_options(os_name, tie_to_parent=False)  # type: ignore[arg-type]
    assert "preexec_fn" not in untied


@pytest.mark.parametrize("os_name", ["linux", "darwin"])
def test_posix_stops_the_group_with_sigterm_then_sigkill(os_name: str) -> None:
    assert termination(os_name, force=False).signal == signal.SIGTERM  # type: ignore[arg-type]
    assert termination(os_name, force=True).signal == signal.SIGKILL  # type: ignore[arg-type]


@pytest.mark.parametrize(("delivered", "wait_s"), [(True, 10.0), (False, 0.0)])
def test_a_refused_stop_request_is_forced_at_once(delivered: bool, wait_s: float) -> None:
    # Windows: taskkill without /F fails at once for a window-less console process (`ollama serve`): no
    # full grace to wait before /F.
    assert grace_after_asking(delivered, 10.0) == wait_s


def test_windows_stops_the_tree_with_taskkill() -> None:
    assert termination("windows", force=False).signal is None
    assert termination("windows", force=False).taskkill_args == ("/T",)
    assert termination("windows", force=True).taskkill_args == ("/T", "/F")
