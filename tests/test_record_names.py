"""Record names reach the apps as strings: Hydra reads ``record=118e24`` as 1.18e+26 unless
the override is quoted, which ``ecgcnn.apps.string_overrides`` does on the raw command line."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import ecgcnn.apps
from ecgcnn.apps import RECORD_KEYS, quote_record_overrides


@pytest.mark.parametrize(
    ("arg", "rewritten"),
    [
        ("record=118e24", "record='118e24'"),
        ("record=118e06", "record='118e06'"),
        ("record=0012", "record='0012'"),
        ("record=100", "record='100'"),
        ("records=[118e24,100]", "records=['118e24','100']"),
        ("data.records=[100, 118e00]", "data.records=['100','118e00']"),
        ("split.train_records=[101,118e12]", "split.train_records=['101','118e12']"),
        ("record=100,118e24", "record='100','118e24'"),  # a multirun sweep
        ("records=[100,101],[118e24]", "records=['100','101'],['118e24']"),
        ("+record=1e3", "+record='1e3'"),
        ("record='118e24'", "record='118e24'"),
        ('record="118e24"', 'record="118e24"'),
        ("record=${oc.env:REC}", "record=${oc.env:REC}"),
        ("records=[${a},118e24]", "records=[${a},'118e24']"),
        ("record=null", "record=null"),
        ("record=range(100,110)", "record=range(100,110)"),
        ("records=[]", "records=[]"),
        ("~record", "~record"),
        ("trainer.seed=1e3", "trainer.seed=1e3"),  # not a record key
        ("input=118e24", "input=118e24"),
        ("-m", "-m"),
        ("--config-name=monitor", "--config-name=monitor"),
    ],
)
def test_rewrite(arg, rewritten):
    assert quote_record_overrides([arg]) == [rewritten]


def test_rewritten_values_parse_as_the_typed_strings():
    parser = OverridesParser.create()
    assert parser.parse_override("record=118e24").value() == 1.18e26  # the problem
    assert parser.parse_override("record=118e06").value() == 118e6
    for arg, want in [
        ("record=118e24", "118e24"),
        ("records=[118e24,0012]", ["118e24", "0012"]),
        ("record=118e_6", "118e_6"),
    ]:
        assert parser.parse_override(quote_record_overrides([arg])[0]).value() == want
    sweep = parser.parse_override(quote_record_overrides(["record=100,118e24"])[0])
    assert [str(v) for v in sweep.sweep_string_iterator()] == ["'100'", "'118e24'"]


def _config_keys(node, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            out.add(str(k))
            _config_keys(v, out)
    return out


def test_every_app_with_a_record_setting_quotes_it():
    checked = []
    for info in pkgutil.iter_modules(ecgcnn.apps.__path__):
        mod = importlib.import_module(f"ecgcnn.apps.{info.name}")
        main = getattr(mod, "main", None)
        src = Path(mod.__file__).read_text()
        name = re.search(r'@hydra\.main\([^)]*config_name="(\w+)"', src)
        if main is None or name is None:
            continue
        cfg = OmegaConf.to_container(compose(name.group(1)), resolve=False, throw_on_missing=False)
        if _config_keys(cfg, set()) & set(RECORD_KEYS):
            assert set(getattr(main, "string_override_keys", ())) >= set(RECORD_KEYS), info.name
            checked.append(info.name)
    assert {"monitor", "finetune", "zeroshot", "prepare"} <= set(checked)


@pytest.mark.parametrize(
    ("script", "args", "want"),
    [
        ("ecgcnn.apps.prepare", ["data.records=[118e24]"], "118e24.hea"),
        ("ecgcnn.apps.finetune", ["record=118e24"], "'118e24' is not one of the split's patients"),
    ],
)
def test_app_sees_the_record_name(tmp_path, script, args, want):
    empty = tmp_path / "empty"
    empty.mkdir()
    cmd = [
        sys.executable,
        "-c",
        f"from {script} import main; main()",
        *args,
        f"data.root={empty}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert want in proc.stderr and "1.18e+26" not in proc.stderr
