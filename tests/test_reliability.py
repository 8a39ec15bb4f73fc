"""Runs that stop early lose nothing: real signals, kill -9, resume, concurrency, full disks, determinism."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from nnrun import rundir as rd
from nnrun.atomic import write_json_atomic
from nnrun.errors import RunDirError

from conftest import ROOT, dead_pid, train_config

NNRUN = [sys.executable, "-m", "nnrun"]
DIABETES = str(ROOT / "configs" / "diabetes_mlp.yaml")
# Batch 1 makes an epoch take ~0.1 s, long enough to interrupt mid-run.
SLOW = ["--set", "training.epochs=12", "--set", "training.batch_size=1", "--set", "dataset.validation=0.2",
        "--set", "run.seed=11"]


def history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / rd.HISTORY) as handle:
        return list(csv.DictReader(handle))


def without_times(rows):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def start_training(runs: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """Start `nnrun train` and wait until it has completed two epochs."""
    proc = subprocess.Popen([*NNRUN, "train", DIABETES, *SLOW, *extra, "--runs-dir", str(runs), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list(runs.glob(f"*/{rd.HISTORY}"))
        if found and len(history(found[0].parent)) >= 2:
            return proc, found[0].parent
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("training never reached epoch 2")


TRAINING_FIXTURES = {"uninterrupted"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("straight")
    result = subprocess.run([*NNRUN, "train", DIABETES, *SLOW, "--runs-dir", str(runs), "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_and_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted, sig):
    proc, run_dir = start_training(tmp_path)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped after" in err and "--resume" in err and "Traceback" not in err

    info = json.loads((run_dir / rd.RUN).read_text())
    assert info["status"] == "interrupted"
    done = json.loads((run_dir / rd.LAST_CHECKPOINT_STATE).read_text())["epoch"]
    rows = history(run_dir)
    assert len(rows) == done >= 2 and done < 12  # history holds exactly the completed epochs
    assert not (run_dir / rd.METRICS).exists() and not (run_dir / rd.MODEL).exists()

    resumed = subprocess.run([*NNRUN, "train", "--resume", str(run_dir), "--quiet"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert Path(resumed.stdout.strip()) == run_dir
    info = json.loads((run_dir / rd.RUN).read_text())
    assert info["status"] == "completed" and info["resumed"][0]["from_epoch"] == done
    # The data order is fixed by the seed and the optimizer state is in the
    # checkpoint, so the arithmetic is the same: we found the histories identical
    # (tolerance 0) and assert exactly that.
    assert without_times(history(run_dir)) == without_times(history(uninterrupted))
    ours = json.loads((run_dir / rd.METRICS).read_text())
    theirs = json.loads((uninterrupted / rd.METRICS).read_text())
    assert ours["test"] == theirs["test"] and ours["epochs_run"] == 12


DROPOUT = ["--set", "model.layers=[{type: Dense, units: 12, activation: relu}, {type: Dropout, rate: 0.3}, "
           "{type: Dense, units: 8, activation: relu}, {type: GaussianNoise, stddev: 0.1}, "
           "{type: Dense, units: 1, activation: sigmoid}]"]


@pytest.mark.slow
def test_resume_of_a_model_with_random_layers_matches_an_uninterrupted_run(tmp_path):
    # Dropout and GaussianNoise draw from seed-generator state that a .keras file
    # does not restore; checkpoints/last.json carries it. Without that the
    # resumed epochs draw other masks and the histories part ways.
    straight = subprocess.run([*NNRUN, "train", DIABETES, *SLOW, *DROPOUT, "--runs-dir", str(tmp_path / "straight"),
                               "--quiet"], capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    proc, run_dir = start_training(tmp_path / "stopped", *DROPOUT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert len(json.loads((run_dir / rd.LAST_CHECKPOINT_STATE).read_text())["seed_generators"]) == 2
    resumed = subprocess.run([*NNRUN, "train", "--resume", str(run_dir), "--quiet"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert without_times(history(run_dir)) == without_times(history(Path(straight.stdout.strip())))


@pytest.mark.slow
def test_kill_9_leaves_a_crashed_run_that_resumes(tmp_path, uninterrupted):
    proc, run_dir = start_training(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    info = json.loads((run_dir / rd.RUN).read_text())
    assert info["status"] == "running" and rd.effective_status(info) == "crashed"
    time.sleep(3)  # a pause before the resume, which its duration leaves out
    assert (run_dir / rd.CONFIG).read_text() and (run_dir / rd.LAST_CHECKPOINT).is_file()
    assert len(history(run_dir)) >= 2  # the files already written are intact

    resumed = subprocess.run([*NNRUN, "train", "--resume", str(run_dir), "--quiet"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    info = json.loads((run_dir / rd.RUN).read_text())
    assert info["status"] == "completed"
    wall = (datetime.fromisoformat(info["finished"]) - datetime.fromisoformat(info["started"])).total_seconds()
    assert 0 < info["duration_s"] <= wall - 2  # second-precision timestamps: 3 s of pause, less up to 1 s
    assert without_times(history(run_dir)) == without_times(history(uninterrupted))


PROBE = ("import json, sys; from pathlib import Path; from nnrun import rundir as rd; "
         "print(rd.effective_status(json.loads((Path(sys.argv[1]) / 'run.json').read_text()), sys.argv[1]))")


def probe(run: rd.RunDir) -> str:
    """The status another process sees."""
    return subprocess.run([sys.executable, "-c", PROBE, str(run.path)], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def test_run_lock_tells_a_live_run_from_a_dead_one_whatever_host_run_json_names(tmp_path):
    # Another machine is stood in for by run.json's host: the pid then proves nothing, only the lock can tell.
    run = rd.RunDir(tmp_path / "20260101-000000-x")
    run.path.mkdir()
    info = {"status": "running", "host": "another-host", "pid": 1}
    run.write_run(info)
    assert rd.effective_status(info, run.path) == "running"  # no run.lock (an older run): cannot tell, so running
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from nnrun import rundir as rd; "
                               "rd.RunDir(sys.argv[1]).claim(); print('held', flush=True); time.sleep(60)", str(run.path)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert rd.effective_status(info, run.path) == "running"
        with pytest.raises(RunDirError, match="being trained by another process"):
            run.claim()
        resumed = subprocess.run([*NNRUN, "train", "--resume", str(run.path)], capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 2
        assert "being trained by another process (pid 1 on another-host)" in resumed.stderr
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert rd.effective_status(info, run.path) == "crashed"  # kill -9: the kernel let go

    run.claim()  # as resume does first: whoever wrote 'running' is gone
    assert rd.effective_status(info, run.path) == "crashed"
    assert probe(run) == "running"  # asking in this process did not drop the lock (closing any handle would)
    run.update_run(host=socket.gethostname(), pid=os.getpid())
    assert rd.effective_status(run.read_run(), run.path) == "crashed"  # claimed to resume, not yet marked running
    run.start(name="x", seed=0, argv=[], now=datetime.now())  # as a resume marks it running again
    assert run.read_run()["locked"] is True
    assert rd.effective_status(run.read_run(), run.path) == "running"  # this process trains it
    assert probe(run) == "running"
    run.release()
    assert probe(run) == "crashed"  # the lock is free: nobody trains it, though run.json's pid lives (this one)
    run.update_run(pid=dead_pid())
    assert probe(run) == "crashed"


def test_a_live_pid_beside_a_free_lock_is_no_running_run(tmp_path):
    # A container restarted after an OOM kill: the same host name, and the next process gets the same pid (1, say).
    run = rd.RunDir(tmp_path / "20260101-000000-x")
    run.path.mkdir()
    (run.path / rd.RUN_LOCK).touch()
    for pid in (os.getpid(), os.getppid()):  # this process's (not training it), and another live one's
        info = {"status": "running", "host": socket.gethostname(), "pid": pid}
        assert rd.effective_status(info, run.path) == "crashed"
        assert rd.effective_status(info) == "running"  # no lock to ask: the live pid is all there is
    # A trainer whose claim could not lock (ENOLCK: the filesystem's lock service down): its lock tells nothing.
    assert rd.effective_status({**info, "locked": False}, run.path) == "running"
    (run.path / rd.RUN_LOCK).unlink()
    assert rd.effective_status(info, run.path) == "running"  # an older run without run.lock: as before


def test_a_probe_holding_the_lock_for_a_moment_does_not_fail_a_claim(tmp_path):
    run = rd.RunDir(tmp_path / "run")
    run.path.mkdir()
    (run.path / rd.RUN_LOCK).touch()
    prober = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; h = open(sys.argv[1]); "
                               "fcntl.lockf(h, fcntl.LOCK_SH); print('probing', flush=True); time.sleep(0.2)",
                               str(run.path / rd.RUN_LOCK)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert prober.stdout.readline().strip() == "probing"
    run.claim()  # waits the probe out
    prober.wait(timeout=30)
    run.write_run({"status": "running", "host": "another-host", "pid": 1})
    assert probe(run) == "running"  # the claim took the lock
    run.release()
    assert probe(run) == "crashed"


def can_claim(run: rd.RunDir) -> bool:
    """Whether another process may take the run's lock now (a claim waits half a second for it)."""
    claim = "import sys; from nnrun import rundir as rd; rd.RunDir(sys.argv[1]).claim()"
    return subprocess.run([sys.executable, "-c", claim, str(run.path)], capture_output=True).returncode == 0


def test_a_resume_that_is_refused_or_cannot_load_the_run_lets_go_of_its_lock(tmp_path):
    from nnrun import training
    from nnrun.console import Reporter, make_console
    from nnrun.errors import ConfigError

    run = rd.RunDir(tmp_path / "20260101-000000-x")
    run.path.mkdir()
    run.write_run({"status": "interrupted", "host": socket.gethostname(), "pid": dead_pid()})
    with pytest.raises(RunDirError, match="has no checkpoint to resume from"):
        training.resume(run.path, reporter=Reporter(make_console(quiet=True)), argv=[])
    assert can_claim(run)

    (run.path / rd.CHECKPOINTS).mkdir()
    run.file(rd.LAST_CHECKPOINT).write_bytes(b"")
    write_json_atomic(run.file(rd.LAST_CHECKPOINT_STATE), {"epoch": 1})
    run.write_config("training: {epochs: many}\n")  # a config this nnrun cannot read: the run cannot be loaded
    with pytest.raises(ConfigError):
        training.resume(run.path, reporter=Reporter(make_console(quiet=True)), argv=[])
    assert can_claim(run)


def test_resuming_a_completed_run_says_so_even_where_its_lock_cannot_be_opened(tmp_path):
    run = rd.RunDir(tmp_path / "20260101-000000-x")
    run.path.mkdir()
    run.write_run({"status": "completed", "host": "another-host", "pid": 1})
    run.file(rd.RUN_LOCK).mkdir()  # as another user's read-only run.lock is to this one: not to be opened for writing
    with pytest.raises(RunDirError, match="is already completed; use --rerun"):
        run.claim_to_resume()
    run.file(rd.RUN_LOCK).rmdir()
    run.write_run({"status": "pruned", "host": socket.gethostname(), "pid": dead_pid()})  # final too: its sweep ranks it
    with pytest.raises(RunDirError, match=r"was pruned \(its sweep stopped it and ranks it so\); use --rerun .*x to "):
        run.claim_to_resume()
    run.write_run({"status": "running", "host": socket.gethostname(), "pid": dead_pid()})
    with pytest.raises(RunDirError, match="has no checkpoint"):
        run.claim_to_resume()  # crashed: the lock is free and the pid gone
    assert can_claim(run)


def test_duration_counts_the_time_trained_not_the_pause_before_a_resume(tmp_path):
    from datetime import timedelta

    t0 = datetime(2026, 1, 1, 12, 0, 0)
    run = rd.RunDir(tmp_path / "20260101-120000-x")
    run.path.mkdir()
    run.start(name="x", seed=1, argv=[], now=t0)
    (run.path / rd.CHECKPOINTS).mkdir()
    write_json_atomic(run.file(rd.LAST_CHECKPOINT_STATE), {"epoch": 2})
    assert run.finish("interrupted", now=t0 + timedelta(seconds=10))["duration_s"] == 10  # Ctrl-C after 10 s

    def resume_then(stop: str, after: float, pause: timedelta) -> dict:
        at = datetime.fromisoformat(run.read_run().get("finished") or run.read_run()["started"]) + pause
        run.mark_resumed(run.read_run(), from_epoch=2, argv=[], now=at)
        assert run.read_run()["duration_s"] is None  # running again
        return run.finish(stop, now=at + timedelta(seconds=after))

    assert resume_then("interrupted", 5, timedelta(hours=1))["duration_s"] == 15  # an hour's pause, then 5 s more
    # Killed (kill -9) in the next segment, whose last checkpoint came 3 s in: the epochs lost after it do not count.
    at = datetime.fromisoformat(run.read_run()["finished"]) + timedelta(days=1)
    run.mark_resumed(run.read_run(), from_epoch=3, argv=[], now=at)
    saved = (at + timedelta(seconds=3)).timestamp()
    os.utime(run.file(rd.LAST_CHECKPOINT_STATE), (saved, saved))
    run.mark_resumed(run.read_run(), from_epoch=4, argv=[], now=at + timedelta(days=2))
    info = run.finish("completed", now=at + timedelta(days=2, seconds=2))
    assert info["duration_s"] == 15 + 3 + 2
    assert [r["active_s"] for r in info["resumed"]] == [10, 15, 18]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="zombies are read from /proc (Linux)")
def test_a_process_that_exited_but_was_not_waited_for_is_not_alive():
    """A killed --jobs worker stays a zombie until the main worker reaps it: its runs are crashed, to resume."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 30
        while open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
            assert time.time() < deadline
            time.sleep(0.05)
        assert not rd.pid_alive(child.pid)
    finally:
        child.wait()
    assert rd.pid_alive(os.getpid())


def test_duration_is_not_rounded_to_the_second_the_run_started_in(tmp_path):
    from datetime import timedelta

    t0 = datetime(2026, 1, 1, 12, 0, 0, 900_000)  # run.json says 12:00:00
    run = rd.RunDir(tmp_path / "20260101-120000-x")
    run.path.mkdir()
    run.start(name="x", seed=1, argv=[], now=t0)
    assert run.finish("completed", now=t0 + timedelta(seconds=0.2))["duration_s"] == 0.2  # not 1.1
    (run.path / rd.CHECKPOINTS).mkdir()
    write_json_atomic(run.file(rd.LAST_CHECKPOINT_STATE), {"epoch": 2})
    run.update_run(status="interrupted")
    at = t0 + timedelta(hours=1)  # resumed at 13:00:00.9 by this process: 0.3 s more
    run.mark_resumed(run.read_run(), from_epoch=2, argv=[], now=at)
    assert run.finish("completed", now=at + timedelta(seconds=0.3))["duration_s"] == 0.5


@pytest.mark.slow
def test_resume_refuses_a_completed_run(uninterrupted):
    result = subprocess.run([*NNRUN, "train", "--resume", str(uninterrupted)], capture_output=True, text=True)
    assert result.returncode == 2 and "already completed" in result.stderr and "--rerun" in result.stderr


@pytest.mark.slow
def test_a_damaged_checkpoint_is_named_and_the_rerun_offered(uninterrupted, tmp_path):
    copy = Path(shutil.copytree(uninterrupted, tmp_path / uninterrupted.name))
    info = json.loads((copy / rd.RUN).read_text())
    (copy / rd.RUN).write_text(json.dumps({**info, "status": "interrupted"}))
    (copy / rd.LAST_CHECKPOINT).write_bytes(b"half a zip")
    result = subprocess.run([*NNRUN, "train", "--resume", str(copy)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"Error: {copy / rd.LAST_CHECKPOINT}: cannot load the checkpoint")
    assert f"the file is damaged, so the run cannot resume. Train it again: nnrun train --rerun {copy}" in result.stderr


@pytest.mark.slow
def test_rerun_trains_the_saved_config_into_a_new_directory(uninterrupted, tmp_path):
    result = subprocess.run([*NNRUN, "train", "--rerun", str(uninterrupted), "--runs-dir", str(tmp_path), "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    new = Path(result.stdout.strip())
    assert new != uninterrupted and new.parent == tmp_path
    assert (new / rd.CONFIG).read_text().replace(str(tmp_path), "X") == (uninterrupted / rd.CONFIG).read_text().replace(
        str(uninterrupted.parent), "X")
    assert without_times(history(new)) == without_times(history(uninterrupted))


def test_eight_processes_in_the_same_second_get_eight_directories(tmp_path):
    code = (
        "import sys; from datetime import datetime; from nnrun.rundir import create_run_dir; "
        "print(create_run_dir(sys.argv[1], 'same', datetime(2026, 1, 1, 12, 0, 0)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) for _ in range(8)]
    paths = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(paths)) == 8 and len(list(tmp_path.iterdir())) == 8


@pytest.mark.slow
def test_two_real_trainings_started_together_do_not_collide(tmp_path):
    args = [*NNRUN, "train", DIABETES, "--set", "training.epochs=1", "--set", "training.batch_size=64",
            "--runs-dir", str(tmp_path), "--quiet", "--name", "twin"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    dirs = {o[0].strip() for o in outs}
    assert len(dirs) == 2
    for d in dirs:
        assert json.loads((Path(d) / rd.RUN).read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_full_disk_fails_the_run_without_claiming_completed(tmp_path, monkeypatch):
    import errno

    from nnrun import atomic

    real = atomic.write_bytes_atomic

    def full_disk(path, data):
        if Path(path).name == rd.METRICS:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(atomic, "write_bytes_atomic", full_disk)
    with pytest.raises(RunDirError, match="No space left on device"):
        train_config(DIABETES, tmp_path, ["training.epochs=1", "training.batch_size=64"])
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / rd.RUN).read_text())["status"] == "failed"
    assert not (run_dir / rd.METRICS).exists()


def test_runs_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="cannot create it"):
        rd.create_run_dir(blocker / "runs", "x", __import__("datetime").datetime.now())


def test_readers_never_see_half_a_json(tmp_path):
    path = tmp_path / "big.json"
    write_json_atomic(path, {"n": 0})
    payloads = [{"n": i, "pad": "x" * 200_000} for i in range(1, 40)]
    stop = threading.Event()
    bad: list[str] = []

    def reader():
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                bad.append(str(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    for payload in payloads:
        write_json_atomic(path, payload)
    stop.set()
    thread.join()
    assert not bad
    assert json.loads(path.read_text())["n"] == 39
    assert not [p for p in tmp_path.iterdir() if p.name != "big.json"]  # no temp files left


SLOW_PLOT = """import sys, time
import nnrun.plots as plots
plot = plots.plot_curves
def slow(*args, **kwargs):
    print("plotting", file=sys.stderr, flush=True)
    time.sleep(3)
    plot(*args, **kwargs)
plots.plot_curves = slow
from nnrun.cli import app
app(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_stop_after_the_last_epoch_still_completes_the_run(tmp_path):
    """Ctrl-C while the test split is evaluated, the model saved or the curves plotted: the run is saved, not lost."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PLOT, "train", DIABETES, "--set", "training.epochs=2",
                             "--runs-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "plotting" not in (line := proc.stderr.readline()):
        assert line, "training ended before it plotted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopping once the run is saved" in out + err
    run_dir = Path(out.strip().splitlines()[-1])
    assert json.loads((run_dir / rd.RUN).read_text())["status"] == "completed"
    assert (run_dir / rd.MODEL).is_file() and (run_dir / rd.CURVES).is_file() and (run_dir / rd.METRICS).is_file()


@pytest.mark.slow
def test_cnn_is_deterministic(tmp_path, data_dir):
    sets = ["training.epochs=2", "dataset.limit=600", "training.batch_size=64", "run.seed=3"]
    a = train_config(ROOT / "configs" / "fashion_cnn.yaml", tmp_path / "a", sets)
    b = train_config(ROOT / "configs" / "fashion_cnn.yaml", tmp_path / "b", sets)
    assert without_times(history(a.run_dir)) == without_times(history(b.run_dir))
    assert a.metrics == b.metrics


@pytest.mark.slow
def test_mlp_with_dropout_is_deterministic(tmp_path, data_dir):
    sets = ["training.epochs=2", "dataset.limit=1000", "run.seed=5"]
    a = train_config(ROOT / "configs" / "mnist_mlp.yaml", tmp_path / "a", sets)
    b = train_config(ROOT / "configs" / "mnist_mlp.yaml", tmp_path / "b", sets)
    assert without_times(history(a.run_dir)) == without_times(history(b.run_dir))
    assert a.metrics == b.metrics


@pytest.mark.slow
def test_run_json_records_what_reproduces_the_run(diabetes_run):
    info = json.loads((diabetes_run / rd.RUN).read_text())
    for key in ("argv", "seed", "versions", "host", "git_commit", "config_file", "cwd", "platform"):
        assert key in info, key
    assert os.path.exists(diabetes_run / rd.CONFIG)


@pytest.mark.slow
def test_a_stop_during_the_last_epoch_resumes_to_completed(tmp_path):
    """Ctrl-C in the last epoch saves every epoch; --resume then only evaluates and finishes the run."""
    from nnrun.console import Reporter, make_console
    from nnrun.training import resume

    done = train_config(DIABETES, tmp_path, ["training.epochs=1", "training.batch_size=64"])
    run_dir = done.run_dir
    expected = json.loads((run_dir / rd.METRICS).read_text())
    assert json.loads((run_dir / rd.LAST_CHECKPOINT_STATE).read_text())["epoch"] == 1
    (run_dir / rd.METRICS).unlink()
    (run_dir / rd.MODEL).unlink()
    rd.RunDir(run_dir).update_run(status="interrupted")

    result = resume(run_dir, reporter=Reporter(make_console(quiet=True)), argv=["pytest"])
    assert result.status == "completed"
    assert json.loads((run_dir / rd.RUN).read_text())["status"] == "completed"
    assert json.loads((run_dir / rd.METRICS).read_text())["test"] == expected["test"]
    assert len(history(run_dir)) == 1
