"""The AsyncAPI documents are generated from the code, current, and valid for the official parser."""

import shutil
import subprocess
from pathlib import Path

import pytest

from ops import asyncapi

DOCS = asyncapi.DOCS
SERVICES = asyncapi.built_services()


@pytest.mark.parametrize("service", SERVICES)
def test_committed_document_matches_the_code(service):
    path = DOCS / f"{service}.json"
    assert path.exists(), f"{path.name} missing: run `make docs`"
    assert path.read_text() == asyncapi.render(service), f"{path.name} is stale: run `make docs`"


@pytest.mark.parametrize("service", SERVICES)
def test_document_names_every_command_and_owned_event(service):
    import importlib

    from shared.contracts import registered_events

    document = asyncapi.document(service)
    routes = importlib.import_module(f"services.{service}.app").definition().router.routes
    messages = document["components"]["messages"]
    assert {f"command.{name}" for name in routes} <= set(messages)
    owned = {n for n, c in registered_events().items() if c.owner == service}
    assert {f"event.{name}" for name in owned} <= set(messages)


def test_documents_pass_the_official_asyncapi_parser():
    node = shutil.which("node")
    assert node, "node is needed to run the official AsyncAPI parser"
    assert (DOCS / "node_modules" / "@asyncapi" / "parser").exists(), "run `make install`"
    files = [str(DOCS / f"{s}.json") for s in SERVICES]
    result = subprocess.run([node, str(DOCS / "validate.mjs"), *files], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": valid") == len(files)
