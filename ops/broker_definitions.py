"""Prints the queues and bindings of `shared.topology` as RabbitMQ definitions (JSON).

For brokers provisioned by an administrator, where services run with least privilege and
do not declare the topology themselves (WFH_DECLARE_TOPOLOGY=false).
"""

from __future__ import annotations

import argparse
import json

from shared import topology


def definitions(namespace: str, vhost: str) -> dict:
    exchanges = [
        {"name": name, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
         "internal": False, "arguments": {}}
        for name in (f"{namespace}.events", f"{namespace}.dead-letters",
                     topology.notifications_exchange(namespace))
    ]
    queues, bindings = [], []
    for name in topology.all_queues(namespace):
        queues.append({"name": name, "vhost": vhost, "durable": True, "auto_delete": False,
                       "arguments": topology.queue_arguments(namespace, name)})
        dlq = topology.dead_letter_queue(name)
        queues.append({"name": dlq, "vhost": vhost, "durable": True, "auto_delete": False,
                       "arguments": {"x-queue-type": "quorum"}})
        bindings.append({"source": f"{namespace}.dead-letters", "vhost": vhost, "destination": dlq,
                         "destination_type": "queue", "routing_key": name, "arguments": {}})
    for sub in topology.SUBSCRIPTIONS:
        for key in sub.routing_keys:
            bindings.append({"source": f"{namespace}.events", "vhost": vhost,
                             "destination": sub.queue(namespace), "destination_type": "queue",
                             "routing_key": key, "arguments": {}})
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", default="wfh")
    parser.add_argument("--vhost", default="wfh")
    parser.add_argument("--merge", help="definitions file whose exchanges, queues and bindings are replaced")
    args = parser.parse_args()
    generated = definitions(args.namespace, args.vhost)
    if args.merge:
        with open(args.merge) as f:
            base = json.load(f)
        base.update(generated)
        generated = base
    print(json.dumps(generated, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
