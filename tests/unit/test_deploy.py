"""deploy/: the compose file is valid compose, and the broker definitions match the topology."""

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from ops.broker_definitions import definitions

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"


def test_compose_file_is_valid_against_the_compose_spec_schema():
    tool = shutil.which("check-jsonschema", path=str(Path(__import__("sys").executable).parent))
    assert tool, "check-jsonschema is a test dependency (make install)"
    result = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_built_service_is_in_the_compose_file_with_health_checks():
    from ops.asyncapi import built_services

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in built_services():
        assert name in services, f"{name} missing from the compose file"
        assert services[name].get("healthcheck"), f"{name} has no health check"
        conditions = services[name].get("depends_on", {})
        assert conditions.get("rabbitmq", {}).get("condition") == "service_healthy"
        assert conditions.get("postgres", {}).get("condition") == "service_healthy"


def test_broker_definitions_hold_the_current_topology():
    committed = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
    generated = definitions("wfh", "wfh")
    for key in ("queues", "bindings"):
        assert committed[key] == generated[key], (
            f"deploy/rabbitmq/definitions.json {key} are stale: run "
            "python -m ops.broker_definitions --merge deploy/rabbitmq/definitions.json"
        )


def test_only_the_migration_step_connects_as_the_owner_roles():
    from ops.asyncapi import built_services

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        environment = service.get("environment", {})
        as_owner = [k for k, v in environment.items() if "_owner:" in str(v)]
        assert bool(as_owner) == (name == "migrate"), (name, as_owner)
    migrate = services["migrate"]
    assert set(built_services()) <= set(migrate["command"])
    for name in built_services():
        upper = name.upper()
        assert f"wfh_{name}_owner:" in migrate["environment"][f"WFH_{upper}_MIGRATION_DATABASE_URL"]
        # Only the runtime role's name, to grant to: no password.
        assert migrate["environment"][f"WFH_{upper}_DATABASE_URL"].startswith(f"postgresql://wfh_{name}@")
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
