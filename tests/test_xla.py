"""``training.jit_compile: auto``: the XLA probe's decision, its cache, and that it leaves the run unchanged."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nnrun import rundir as rd
from nnrun import xla
from nnrun.config import load_config

from conftest import ROOT, train_config

DIABETES = ROOT / "configs" / "diabetes_mlp.yaml"
SHORT = ["training.epochs=4", "training.batch_size=16", "dataset.validation=0.2", "run.seed=3"]


def test_decide_keeps_xla_only_where_it_is_faster_and_repays_its_compile():
    steps = 100_000  # 0.5 ms/step without XLA: a 50 s run
    on = xla.decide("auto", 0.5, 0.3, 1.0, steps)
    assert on.enabled and "faster here by 40% per step" in on.reason and on.estimated_train_s == 50.0
    assert not xla.decide("auto", 0.5, 0.49, 1.0, steps).enabled  # 2%: under MIN_GAIN
    assert "1.10x the time" in xla.decide("auto", 0.5, 0.55, 1.0, steps).reason
    assert not xla.decide("auto", 0.5, 0.3, 25.0, steps).enabled  # saves 20 s, compiles for 25 s
    short = xla.decide("auto", 0.5, 0.1, 0.1, 1000)  # 0.5 s of training
    assert not short.enabled and "too short" in short.reason


def test_explicit_setting_and_smoke_and_strategy_are_never_probed():
    def build(jit):
        raise AssertionError("nothing may be built")

    def choice(*sets, smoke=False):
        return xla.choose(load_config(DIABETES, list(sets)), None, None, 1, build, smoke=smoke)

    assert choice("training.jit_compile=true").enabled is True
    assert choice("training.jit_compile=false").enabled is False
    assert "--smoke" in choice(smoke=True).reason
    assert "strategy" in choice("distribution.strategy=mirrored").reason


def test_cache_key_follows_what_the_speed_depends_on(tmp_path, monkeypatch):
    monkeypatch.setenv("NNRUN_CACHE_DIR", str(tmp_path))
    base = load_config(DIABETES)
    key = xla.cache_key(base, (8,), 58)
    assert key == xla.cache_key(load_config(DIABETES), (8,), 58)
    assert key != xla.cache_key(load_config(DIABETES, ["training.batch_size=32"]), (8,), 58)
    assert key != xla.cache_key(load_config(DIABETES, ["training.precision=bfloat16"]), (8,), 58)
    assert key != xla.cache_key(base, (9,), 58) != xla.cache_key(base, (8,), 1)
    xla.write_cache(key, {"plain_ms": 1.0})
    assert xla.read_cache()[key] == {"plain_ms": 1.0}
    (tmp_path / xla.CACHE_FILE).write_text("{damaged")
    assert xla.read_cache() == {}  # measured again, never an error
    monkeypatch.setenv("NNRUN_CACHE_DIR", "off")
    assert xla.cache_path() is None
    monkeypatch.delenv("NNRUN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert xla.cache_path() == tmp_path / "xdg" / "nnrun" / xla.CACHE_FILE  # beside the datasets cache


def test_an_entry_damaged_by_hand_is_measured_again_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("NNRUN_CACHE_DIR", str(tmp_path))
    config = load_config(DIABETES)
    x = np.zeros((576, 8), dtype="float32")
    xla.write_cache(xla.cache_key(config, x.shape[1:], 58), {"measured": "by hand"})  # no plain_ms
    choice = xla.choose(config, x, None, 58, lambda jit: None, probe=False)
    assert not choice.enabled and "not measured on this machine yet" in choice.reason


def test_check_shows_the_decision_without_training(tmp_path, monkeypatch):
    from nnrun.check import check_config

    monkeypatch.setenv("NNRUN_CACHE_DIR", str(tmp_path))
    lines = [str(item) for item in check_config(load_config(DIABETES), DIABETES)]
    assert any("XLA (jit_compile \"auto\"): off, not measured on this machine yet" in line for line in lines)


@pytest.mark.slow
def test_probe_decides_records_caches_and_leaves_the_run_as_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NNRUN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(xla, "PROBE_MIN_TRAIN_S", 0.0)  # probe even this short run, both sides
    probed = train_config(DIABETES, tmp_path / "probed", SHORT)
    info = json.loads((probed.run_dir / rd.RUN).read_text())
    probe = info["jit_probe"]
    assert probe["setting"] == "auto" and not probe["cached"] and probe["probe_s"] > 0
    assert probe["plain_ms"] > 0 and probe["xla_ms"] > 0 and probe["xla_compile_s"] >= 0
    assert info["jit_compile"] is probe["enabled"]

    # the same run with the decision forced: the probe's models changed nothing, bit for bit
    forced = train_config(DIABETES, tmp_path / "forced", SHORT + [f"training.jit_compile={str(probe['enabled']).lower()}"])
    read = lambda run: list(csv.DictReader(open(run / rd.HISTORY)))  # noqa: E731
    strip = lambda rows: [{k: v for k, v in row.items() if k != "time_s"} for row in rows]  # noqa: E731
    assert strip(read(probed.run_dir)) == strip(read(forced.run_dir))
    assert probed.metrics["test"] == forced.metrics["test"]

    again = train_config(DIABETES, tmp_path / "again", SHORT)  # the cache answers: nothing measured twice
    cached = json.loads((again.run_dir / rd.RUN).read_text())["jit_probe"]
    assert cached["cached"] and cached["probe_s"] == 0 and cached["plain_ms"] == probe["plain_ms"]
    assert cached["enabled"] == probe["enabled"]
