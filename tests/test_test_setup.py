"""The test setup itself: tests that need ../shared/cirr skip only outside CI."""

import os
import shutil
import subprocess
import sys

from conftest import REPO


def test_missing_shared_cirr_fails_when_ci_requires_it(tmp_path):
    # The real conftest.py in a checkout that has no ../shared/cirr beside it.
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests/conftest.py", checkout / "tests/conftest.py")
    (checkout / "tests/test_needs_cirr.py").write_text(
        "def test_needs_cirr(shared_cirr):\n    assert shared_cirr.is_dir()\n"
    )
    assert not (tmp_path / "shared").exists()

    def run(**env):
        clean = {k: v for k, v in os.environ.items() if k != "CIRFLOW_REQUIRE_SHARED_CIRR"}
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
    in_ci = run(CIRFLOW_REQUIRE_SHARED_CIRR="1")
    assert in_ci.returncode != 0, in_ci.stdout
    assert "CIRFLOW_REQUIRE_SHARED_CIRR is set" in in_ci.stdout


def test_ci_requires_the_shared_cirr_files():
    assert "export CIRFLOW_REQUIRE_SHARED_CIRR=1" in (REPO / ".ci/run").read_text()
