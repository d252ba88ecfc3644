"""The test setup itself: tests that need ../shared/cirr or ../shared/fashioniq skip only outside
CI."""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.parametrize(
    ("fixture", "require_env"),
    [
        ("shared_cirr", "CIRFLOW_REQUIRE_SHARED_CIRR"),
        ("shared_fashioniq", "CIRFLOW_REQUIRE_SHARED_FASHIONIQ"),
    ],
)
def test_missing_shared_files_fail_when_ci_requires_them(tmp_path, fixture, require_env):
    # The real conftest.py in a checkout that has no ../shared beside it.
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests/conftest.py", checkout / "tests/conftest.py")
    (checkout / "tests/test_needs_shared.py").write_text(
        f"def test_needs_shared({fixture}):\n    assert {fixture}.is_dir()\n"
    )
    assert not (tmp_path / "shared").exists()
    clean = {k: v for k, v in os.environ.items() if k != require_env}

    def run(**env):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests"],
            cwd=checkout,
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    outside_ci = run()
    assert outside_ci.returncode == 0 and "1 skipped" in outside_ci.stdout, outside_ci.stdout
    in_ci = run(**{require_env: "1"})
    assert in_ci.returncode != 0, in_ci.stdout
    assert f"{require_env} is set" in in_ci.stdout
    assert f"export {require_env}=1" in (REPO / ".ci/run").read_text()
