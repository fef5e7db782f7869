"""Generates one AsyncAPI 3.0 document per service from the code itself (`make docs`).

Sources: the service's command router (commands and queries with their payload models),
the event contracts it owns (what it publishes), `shared.topology` (what it consumes), and
the envelope and reply models. A test fails when a committed document is stale.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import topology
from shared.commands import COMMANDS_HEADER, MAX_BATCH, CommandError, CommandRequest, Reply
from shared.contracts import Envelope, registered_events

DOCS = Path(__file__).parents[1] / "docs" / "asyncapi"
SERVICES = ("roster", "leave", "documents", "notify", "reporting")
NAMESPACE = "{namespace}"


def built_services() -> list[str]:
    root = Path(__file__).parents[1] / "services"
    return [s for s in SERVICES if (root / s / "app.py").exists()]


def _asyncapi_dialect(node):
    """Pydantic writes JSON Schema 2020-12 with OpenAPI-style discriminators; the AsyncAPI
    schema dialect is draft-07 based: a discriminator is a property name, tuples use `items`."""
    if isinstance(node, list):
        return [_asyncapi_dialect(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _asyncapi_dialect(v) for k, v in node.items()}
    if isinstance(out.get("discriminator"), dict):
        out["discriminator"] = out["discriminator"]["propertyName"]
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
    return out


def _schemas(models: list[type[BaseModel]]) -> dict:
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    return _asyncapi_dialect(top.get("$defs", {}))


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def document(service: str) -> dict:
    definition = importlib.import_module(f"services.{service}.app").definition()
    package = importlib.import_module(f"services.{service}")
    routes = definition.router.routes
    owned = {n: c for n, c in sorted(registered_events().items()) if c.owner == service}
    consumed = topology.subscriptions_of(service)
    consumed_types = sorted({k.split(".", 1)[1] for s in consumed for k in s.routing_keys})
    events = registered_events()
    models = [r.model for r in routes.values()] + list(owned.values())
    models += [events[t] for t in consumed_types if t in events]
    models += [CommandRequest, Reply, CommandError, Envelope]
    schemas = _schemas(models)

    messages: dict = {}
    channels: dict = {}
    operations: dict = {}

    command_messages = {}
    for name, route in sorted(routes.items()):
        key = f"command.{name}"
        messages[key] = {
            "name": name,
            "title": name,
            "summary": route.summary or _doc(route.model) or name,
            "contentType": "application/json",
            "tags": [{"name": "command" if route.mutates else "query"}],
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CommandRequest"},
                    {"type": "object", "properties": {
                        "type": {"const": name},
                        "payload": {"$ref": f"#/components/schemas/{route.model.__name__}"},
                    }},
                ]
            },
        }
        command_messages[key] = {"$ref": f"#/components/messages/{key}"}
    messages["commands"] = {
        "name": "Commands", "title": "Several commands in one message",
        "summary": f"Up to {MAX_BATCH} commands or queries, each with its own headers (its trace context), "
                   "answered by one reply holding their replies in order (`Replies`); malformed as a whole, "
                   "by one `Reply`. Delivered again, it is split into messages of one command each, answered "
                   "one by one to the same reply-to queue and correlation id.",
        "contentType": "application/json",
        "headers": {"type": "object", "required": [COMMANDS_HEADER], "properties": {
            COMMANDS_HEADER: {"type": "integer", "minimum": 1, "maximum": MAX_BATCH}}},
        "payload": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {
            "type": "object", "required": ["command"], "properties": {
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "command": {"$ref": "#/components/schemas/CommandRequest"},
            }}},
    }
    command_messages["commands"] = {"$ref": "#/components/messages/commands"}
    messages["reply"] = {
        "name": "Reply", "title": "Reply",
        "summary": "The result, or an error with a code, a Vietnamese message and an English one.",
        "contentType": "application/json",
        "payload": {"$ref": "#/components/schemas/Reply"},
    }
    messages["replies"] = {
        "name": "Replies", "title": "Replies to several commands",
        "summary": "The replies to a message of several commands, in its order.",
        "contentType": "application/json",
        "payload": {"type": "array", "items": {"$ref": "#/components/schemas/Reply"}},
    }
    channels["commands"] = {
        "address": f"{NAMESPACE}.{service}.commands",
        "description": f"Commands and queries of the {service} service (request/reply; the reply goes "
                       "to the request's reply-to queue).",
        "messages": command_messages,
    }
    channels["replies"] = {
        "address": None, "description": "The requester's reply-to queue (direct reply-to).",
        "messages": {"reply": {"$ref": "#/components/messages/reply"},
                     "replies": {"$ref": "#/components/messages/replies"}},
    }
    operations["handleCommand"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/commands"},
        "summary": f"The {service} service answers each command or query with one reply.",
        "messages": [{"$ref": f"#/channels/commands/messages/{k}"} for k in command_messages],
        "reply": {"channel": {"$ref": "#/channels/replies"},
                  "messages": [{"$ref": "#/channels/replies/messages/reply"},
                               {"$ref": "#/channels/replies/messages/replies"}]},
    }

    def event_message(name: str, cls) -> dict:
        return {
            "name": name, "title": name,
            "summary": _doc(cls) or name,
            "contentType": "application/json",
            "headers": {"type": "object", "properties": {
                "event_type": {"const": name},
                "schema_version": {"const": cls.schema_version},
                "tenant": {"type": "string"},
                "traceparent": {"type": "string"},
            }},
            "payload": {"allOf": [
                {"$ref": "#/components/schemas/Envelope"},
                {"type": "object", "properties": {
                    "event_type": {"const": name},
                    "schema_version": {"const": cls.schema_version},
                    "source": {"const": cls.owner},
                    "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
                }},
            ]},
        }

    published = {}
    for name, cls in owned.items():
        messages[f"event.{name}"] = event_message(name, cls)
        published[f"event.{name}"] = {"$ref": f"#/components/messages/event.{name}"}
    if published:
        channels["events"] = {
            "address": f"{NAMESPACE}.events",
            "description": "The durable topic exchange of all events; routing key "
                           f"`{service}.<EventType>`, persistent, published through the outbox.",
            "messages": published,
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": f"{NAMESPACE}.events", "type": "topic", "durable": True, "autoDelete": False,
                "vhost": "/"}}},
        }
        operations["publishEvents"] = {
            "action": "send",
            "channel": {"$ref": "#/channels/events"},
            "summary": f"Events of the {service} service, in commit order, at least once.",
            "messages": [{"$ref": f"#/channels/events/messages/{k}"} for k in published],
        }
    for sub in consumed:
        channel_messages = {}
        for key in sub.routing_keys:
            name = key.split(".", 1)[1]
            if name not in events:
                continue
            if f"event.{name}" not in messages:
                messages[f"event.{name}"] = event_message(name, events[name])
            channel_messages[f"event.{name}"] = {"$ref": f"#/components/messages/event.{name}"}
        channel_id = f"consume.{sub.name}"
        channels[channel_id] = {
            "address": sub.queue(NAMESPACE),
            "description": f"Durable quorum queue of {service}, bound to {NAMESPACE}.events with "
                           f"{', '.join(sub.routing_keys)}; dead letters in its `.dlq`.",
            "messages": channel_messages,
        }
        operations[f"consume{sub.name.title().replace('-', '')}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{service} applies these events idempotently, in stream order.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{k}"} for k in channel_messages],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"{service} service",
            "version": "1.0.0",
            "description": " ".join((package.__doc__ or "").split()),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:5672", "protocol": "amqp",
                              "description": "Development broker; {namespace} is `wfh` by default"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(service: str) -> str:
    return json.dumps(document(service), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a document is stale")
    args = parser.parse_args()
    stale = []
    for service in built_services():
        path = DOCS / f"{service}.json"
        text = render(service)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(DOCS.parents[1])}")
    if stale:
        print(f"stale AsyncAPI documents: {', '.join(stale)}; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
