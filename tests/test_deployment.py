"""The server deployment (docker-compose.yml + Dockerfile) is consistent with the code: every service exists,
every DIM_* variable it sets is a real setting, and every command it runs is a real `dim` subcommand.
(No Docker engine runs here; the compose file is checked statically.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from dim.cli import SUBCOMMANDS
from dim.config import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_of_the_server_stack():
    assert {"redpanda", "clickhouse", "minio", "grafana", "flow", "solver", "mover", "api", "provision", "auditor"} <= set(
        COMPOSE["services"]
    )


def _dim_env():
    for name, svc in COMPOSE["services"].items():
        for var, value in (svc.get("environment") or {}).items():
            if var.startswith("DIM_"):
                yield name, var, value


def test_every_dim_variable_is_a_real_setting():
    seen = 0
    for service, var, _value in _dim_env():
        section, _, field = var.removeprefix("DIM_").lower().partition("__")
        assert section in Settings.model_fields, f"{service}: {var} names no settings section"
        model = Settings.model_fields[section].annotation
        assert field in model.model_fields, f"{service}: {var} names no field of {section}"
        seen += 1
    assert seen >= 10


def test_compose_environment_builds_a_valid_server_config(monkeypatch):
    import re

    for _service, var, value in _dim_env():
        # compose's ${NAME:-default} as compose resolves it with NAME unset
        monkeypatch.setenv(var, re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value)))
    s = Settings()
    assert s.flow.allowed_lateness_s == 300.0 and s.flow.dedup_window_s is None
    assert s.kafka.bootstrap == "redpanda:9092"
    assert s.s3.endpoint == "http://minio:9000"
    assert s.clickhouse.mode == "server" and s.clickhouse.url == "http://clickhouse:8123"


def test_service_commands_are_dim_subcommands():
    for name, svc in COMPOSE["services"].items():
        if svc.get("image") == "data-in-motion:latest" and svc.get("command"):
            assert svc["command"][0] in SUBCOMMANDS, f"{name} runs an unknown subcommand"


def test_dockerfile_ships_every_package():
    docker = (REPO / "Dockerfile").read_text()
    for pkg in ("dim", "schemas", "flows", "solver", "mover", "api"):
        assert f"COPY {pkg} ./{pkg}" in docker
    assert 'ENTRYPOINT ["dim"]' in docker


def test_grafana_provisioning_is_mounted():
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    for mount in mounts:
        assert (REPO / mount.split(":")[0]).exists(), mount
