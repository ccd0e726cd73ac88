"""``ecgcnn-noise-stress``: the MIT-BIH Noise Stress Test.

``mode=real_em`` (default, :mod:`ecgcnn.noise.real_em`): the streaming monitor on record 118
with PhysioNet's real electrode-motion noise (NSTDB 118e24..118e_6) and on other records with
that noise added, without and with the quality stage; ``mode=generated``
(:mod:`ecgcnn.noise.stress`): the patient models' beats under the NSTDB bw/ma noise and a
synthetic em, 44 patients.
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

import ecgcnn.config  # noqa: F401  (registers the schemas)
from ecgcnn.apps import CONFIG_DIR, output_dir, string_overrides
from ecgcnn.errors import EcgError, cli_errors


@string_overrides()
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="noise_stress")
@cli_errors
def main(cfg: DictConfig) -> None:
    out = output_dir()
    if cfg.mode == "real_em":
        from ecgcnn.noise.real_em import format_real_em, headline_real_em, real_em_stress

        s = real_em_stress(cfg, out)
        print(format_real_em(s))
        line = headline_real_em(s)
    elif cfg.mode == "generated":
        from ecgcnn.noise.report import format_table, headline
        from ecgcnn.noise.stress import generated_stress

        s = generated_stress(cfg, out)
        print(format_table(s))
        line = headline(s)
    else:
        raise EcgError(f"mode: unknown '{cfg.mode}' (real_em | generated)")
    print(f"report: {out / 'report.md'}")
    print(json.dumps(line))


if __name__ == "__main__":
    main()
