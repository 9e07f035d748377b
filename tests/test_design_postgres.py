"""A design search shared by two worker processes through a real PostgreSQL server.

The fixture starts Debian's PostgreSQL in a temporary directory on a free loopback port (as the
unprivileged ``postgres`` user when the tests run as root, as CI does) and stops it afterwards.
``.ci/run`` installs the server; on a machine without it the test is skipped with the reason,
except under CI, where a missing server is a failure.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("psycopg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres():
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    # not under pytest's temporary directory: its parents are private to root, and the server
    # runs as another user
    root = Path(tempfile.mkdtemp(prefix="archlab-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = dict(check=True, capture_output=True, text=True, timeout=120)
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"], **run)
    log = root / "server.log"
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-o", opts, "-w", "start"], **run)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from archlab.data import load
    from archlab.runs.search import TrialContext, load_study, storage_for, work

    url, name, root, worker = sys.argv[1:5]
    study = load_study(storage_for(url), name)
    from archlab.runs.search import SearchPlan
    plan = SearchPlan.from_dict(study.user_attrs["plan"])
    bundle = load("breast_cancer")
    ctx = TrialContext(plan=plan, root=Path(root), bundle_for=lambda f: bundle,
                       data_spec_for=lambda f: {"name": "breast_cancer", "options": {}}, task=None, worker=worker)
    print(json.dumps({"ran": work(study, ctx, max_trials=6)}))
    """
)


def test_two_workers_on_one_postgres_study_run_every_trial_once(postgres, tmp_path):
    from archlab.runs.search import create_study, load_study, storage_for, trial_row
    from archlab.train.task_protocol import Selection
    from test_design_search import _plan

    plan = _plan({"mlp_tabular": 3e-3, "mlp_bn_dropout": 3e-3}, steps=18, budget_s=1e9)
    create_study(storage_for(postgres), "shared", plan, {"design_dir": str(tmp_path)})
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), postgres, "shared", str(tmp_path), f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in (1, 2)
    ]
    ran = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        ran.append(json.loads(out.strip().splitlines()[-1])["ran"])
    study = load_study(storage_for(postgres), "shared")
    finished = [t for t in study.get_trials() if t.state.is_finished()]
    assert all(r >= 1 for r in ran)  # both workers took trials ...
    assert {t.user_attrs["worker"] for t in finished} == {"w1", "w2"}
    rows = [trial_row(t) for t in finished]
    assert len({r.run_dir for r in rows}) == len(rows) == len({r.number for r in rows})  # ... each trial once
    for r in rows:
        assert (tmp_path / r.run_dir / "final_metrics.json").is_file()
    # the best trial the study reports is the one archlab's selection picks from the table
    complete = [r for r in rows if r.state == "complete"]
    best = complete[Selection("accuracy", "max").best_index(r.value for r in complete)]
    assert study.best_trial.value == best.value


def test_join_needs_a_study_and_finds_a_missing_one(postgres, tmp_path):
    from archlab.cli.main import main
    from archlab.errors import ConfigError
    from archlab.runs.design import join_design

    assert main(["design", "--join", postgres]) == 2  # no --study
    with pytest.raises(ConfigError, match="no study 'nope'"):
        join_design(postgres, "nope")
    assert Path(tmp_path).is_dir()
