"""Every config composes, and every option of every group builds its object inside train.yaml.

Configs are discovered by globbing ``configs/``, so a new app or a new group option is covered
without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch
import yaml
from conftest import CONFIGS, compose
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from ecgcnn.data.beats import CLASSES, RR_FEATURES
from ecgcnn.data.cache import cache_key
from ecgcnn.data.io import MITDB_RECORDS
from ecgcnn.data.splits import split_records
from ecgcnn.errors import EcgError
from ecgcnn.models import build_model
from ecgcnn.training.loop import _optimizer, _scheduler, class_weights, select_device
from ecgcnn.training.losses import build_loss


def _is_app_config(path) -> bool:
    """An app config names its ``base_*`` schema first; data files (published.yaml) have none."""
    raw = yaml.safe_load(path.read_text()) or {}
    defaults = raw.get("defaults") if isinstance(raw, dict) else None
    return bool(defaults) and str(defaults[0]).startswith("base_")


TOP = sorted(p for p in CONFIGS.glob("*.yaml"))
APPS = [p.stem for p in TOP if _is_app_config(p)]
GROUPS = sorted(
    d.name for d in CONFIGS.iterdir() if d.is_dir() and d.name not in ("hydra", "experiment")
)
#: configs/experiment/<app>_<variant>.yaml: Hydra's experiment pattern (+experiment=<name>)
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


def test_discovery_finds_the_known_apps_and_groups():
    assert {"prepare", "train", "eval", "download"} <= set(APPS)
    assert {"data", "split", "model", "optim", "trainer"} <= set(GROUPS)
    assert ("model", "kiranyaz2016") in OPTIONS and ("split", "patient_specific") in OPTIONS
    # the published figures are data, not an app config
    assert "published" not in APPS


def _register_app_schemas() -> None:
    """Some apps store their ``base_*`` schema in their own module: import every app."""
    import ecgcnn.apps

    for mod in pkgutil.iter_modules(ecgcnn.apps.__path__):
        importlib.import_module(f"ecgcnn.apps.{mod.name}")


def _dummy(key: str) -> str:
    return f"{key}=dummy"


@pytest.mark.parametrize("name", APPS)
def test_app_config_composes_and_resolves(name):
    _register_app_schemas()
    cfg = compose(name)
    # required `???` values (eval's checkpoint, finetune's record) get a dummy override
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        cfg = compose(name, [_dummy(k) for k in missing])
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(plain, dict) and plain
    if "data" in plain:
        assert plain["data"]["records"] == list(MITDB_RECORDS)
        assert plain["data"]["fs"] == 360.0


def test_eval_requires_a_checkpoint():
    cfg = compose("eval")
    assert OmegaConf.missing_keys(cfg) == {"checkpoint"}
    assert compose("eval", ["checkpoint=x.pt"]).checkpoint == "x.pt"


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_group_option_composes_in_train_and_builds(group, option):
    cfg = compose("train", [f"{group}={option}"])
    assert OmegaConf.missing_keys(cfg) == set()
    if group == "model":
        assert cfg.model.name == option
        torch.manual_seed(0)
        model = build_model(cfg.model, 2, 128, len(RR_FEATURES), len(CLASSES)).eval()
        x, rr = torch.randn(2, 2, 128), torch.randn(2, len(RR_FEATURES))
        out = model(x, rr)
        assert out.shape == (2, len(CLASSES)) and torch.isfinite(out).all()
        # the two rows differ: the model looks at its input
        assert not torch.allclose(out[0], out[1])
    elif group == "optim":
        assert cfg.optim.name == option
        model = build_model(cfg.model, 2, 128, len(RR_FEATURES), len(CLASSES))
        opt = _optimizer(model, cfg.optim)
        expected = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[cfg.optim.name]
        assert type(opt) is expected
        assert opt.param_groups[0]["lr"] == cfg.optim.lr
        assert opt.param_groups[0]["weight_decay"] == cfg.optim.weight_decay
        _scheduler(opt, cfg.optim, cfg.trainer.max_epochs)  # every scheduler name is known
    elif group == "trainer":
        tc = cfg.trainer
        assert tc.max_epochs >= 1 and tc.batch_size >= 1
        assert select_device("cpu") == torch.device("cpu")
        if tc.device == "cuda" and not torch.cuda.is_available():
            with pytest.raises(EcgError, match="trainer.device"):
                select_device(tc.device)
        else:
            assert select_device(tc.device).type in ("cpu", "cuda")
        y = torch.tensor([0, 0, 0, 2]).numpy()
        w = class_weights(y, tc.class_weighting, len(CLASSES))
        build_loss(tc.loss, w)
        assert 0 <= tc.val_fraction < 1
    elif group == "split":
        assert cfg.split.name == option
        train, test = split_records(cfg.split)
        assert set(test) <= set(MITDB_RECORDS) and set(train) <= set(MITDB_RECORDS)
        if option == "inter_patient":  # de Chazal 2004: DS1 and DS2, 22 records each, disjoint
            assert len(train) == len(test) == 22 and not set(train) & set(test)
        if option == "patient_specific":  # Kiranyaz 2016: the 44 non-paced records
            assert len(test) == 44 and not {"102", "104", "107", "217"} & set(test)
            assert sum(cfg.split.common_counts.values()) == 245
    elif group == "data":
        assert len(cache_key(cfg.data)) == 16
        assert list(cfg.data.leads) == ["MLII"]
    else:  # a new group: at least it composed and resolves
        OmegaConf.to_container(cfg[group], resolve=True, throw_on_missing=True)


@pytest.mark.parametrize(
    "override,needle",
    [
        ("trainer.max_epoch=3", "max_epoch"),
        ("trainer.max_epochs=abc", "max_epochs"),
        ("model.activation_param=xyz", "activation_param"),
        ("optim.lr=fast", "lr"),
        # choices are Enums: a value outside them fails here, naming the allowed ones
        ("model.activation=wiggle", "relu, relu6, tanh"),
        ("data.filter.kind=lowpass", "none, bandpass, median, median+bandpass"),
        ("trainer.device=tpu", "auto, cpu, cuda"),
        ("split.name=leave_one_out", "patient_specific, inter_patient"),
    ],
)
def test_typo_and_wrong_type_fail_at_compose_time(override, needle):
    with pytest.raises(ConfigCompositionException) as info:
        compose("train", [override])
    assert needle in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_with_its_app_and_changes_it(name):
    app = next(a for a in sorted(APPS, key=len, reverse=True) if name.startswith(f"{a}_"))
    _register_app_schemas()
    base = compose(app, ["record=100"] if app == "finetune" else [])
    cfg = compose(app, [*(["record=100"] if app == "finetune" else []), f"+experiment={name}"])
    changed = OmegaConf.to_container(cfg, enum_to_str=True) != OmegaConf.to_container(
        base, enum_to_str=True
    )
    assert changed and OmegaConf.missing_keys(cfg) == OmegaConf.missing_keys(base)


def test_group_option_that_does_not_exist_fails():
    with pytest.raises(ConfigCompositionException):
        compose("train", ["model=no_such_model"])
