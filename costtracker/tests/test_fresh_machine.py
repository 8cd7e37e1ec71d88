"""What a fresh clone does: browser tests without chromium, benchmarks without a .env."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# One browser test is enough to see what the gate does with it.
BROWSER_TEST = "usage/tests/test_browser.py::test_it_renders_the_demo_dashboard_readably"

pytestmark = pytest.mark.slow


def _pytest_without_browser(*, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DATABASE_URL")}
    env["CHROMIUM_PATH"] = str(ROOT / "no-such-chromium")
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", BROWSER_TEST],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_skips_browser_tests_loudly_when_chromium_is_missing():
    run = _pytest_without_browser(ci=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout
    # The loud line says how to get the browser, in the header and again at the end.
    assert run.stdout.count("BROWSER TESTS SKIPPED") >= 2
    assert "apt-get install chromium" in run.stdout


def test_it_fails_browser_tests_when_chromium_is_missing_under_ci():
    run = _pytest_without_browser(ci=True)
    assert run.returncode != 0
    assert "skipped" not in run.stdout.splitlines()[-1]
    assert "CI=true but" in run.stdout


def test_it_sets_up_django_for_a_benchmark_without_env_file(tmp_path):
    # A fresh clone has no .env: the benchmark helper must make settings load, not crash.
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ENCRYPTION_KEYS")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/bench.sqlite3"
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); "
        "from benchlib import django_environment; django_environment(); "
        "import django; django.setup(); "
        # The throwaway keys must be usable, not just present: the proxy benchmark encrypts.
        "from providers import crypto; assert crypto.decrypt(crypto.encrypt('k')) == 'k'; "
        "from django.conf import settings; print('ok', bool(settings.ENCRYPTION_KEYS))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok True"


def test_it_passes_whatever_order_transactional_tests_run_in():
    # Without chromium the browser tests are skipped and the order of the transactional tests
    # changed: a transactional test without serialized rollback (test_export_abort's fixtures)
    # then ran just before one with it, whose snapshot failed to load over the content types
    # the first one's flush re-created. conftest.py now gives every transactional test the
    # same rollback.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DATABASE_URL")}
    env["CHROMIUM_PATH"] = str(ROOT / "no-such-chromium")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "usage/tests/test_export_abort.py::test_a_failed_export_says_so_where_the_server_cannot",
            "usage/tests/test_ingest_concurrency.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout.splitlines()[-1] and "error" not in run.stdout.splitlines()[-1]
