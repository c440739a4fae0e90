"""Every command that installs the `embedded` extra builds llama.cpp trimmed to llama-server (the CMake
options of scripts/engine-cmake-args.txt) with one build job per core."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.scripts.test_serve import ROOT, serve

ARGS = serve.engine_cmake_args().split()
# Where the project installs the extra; a new place must be added here (and pass the options).
INSTALLERS = {"scripts/serve.py", "scripts/test.sh"}


def test_the_options_switch_off_what_we_do_not_run() -> None:
    for option in ("LLAMA_BUILD_TESTS", "LLAMA_BUILD_EXAMPLES", "LLAMA_BUILD_APP", "LLAMA_USE_PREBUILT_UI"):
        assert f"-D{option}=OFF" in ARGS


def test_serve_py_passes_the_options_and_the_cores() -> None:
    command, env = serve.engine_install(Path("/venv/bin/python"), {"CMAKE_ARGS": "-DGGML_CUDA=ON"})
    assert command[-2:] == ["-e", ".[embedded]"]
    assert env["CMAKE_ARGS"].split() == [*ARGS, "-DGGML_CUDA=ON"]  # the user's own come last and win
    assert env["LLAMA_CPP_BUILD_JOBS"] == str(serve.cores())


def test_test_sh_passes_the_options_and_the_cores() -> None:
    # The install command as test.sh runs it (continuation lines joined), its pip replaced by `env`: the
    # environment pip would get.
    script = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8").replace("\\\n", " ")
    [line] = [line for line in script.splitlines() if "'.[embedded]'" in line]
    shown = line.replace(".venv/bin/python -m pip install --progress-bar off -e '.[embedded]'", "env")
    assert shown != line, line
    env = {k: v for k, v in os.environ.items() if k not in ("CMAKE_ARGS", "LLAMA_CPP_BUILD_JOBS")}
    out = subprocess.run(["bash", "-c", shown], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert values["CMAKE_ARGS"].split() == ARGS
    assert values["LLAMA_CPP_BUILD_JOBS"] == str(serve.cores())


def test_no_other_place_installs_the_extra() -> None:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    places = set()
    for name in listed.splitlines():
        path = ROOT / name
        if name.endswith(".md") or name.startswith("tests/") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"pip[^\n]*install[^\n]*\[embedded\]|\"\.\[embedded\]\"", text) and "CMAKE" not in name.upper():
            places.add(name)
    assert places == INSTALLERS, f"install the extra through CMAKE_ARGS of {shlex.quote(str(ARGS))}: {places}"
