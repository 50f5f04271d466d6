#!/usr/bin/env python3
"""A DataMesh client in Python, with stubs generated from the node's proto.

Deploys a small program, appends events, reads a document (waiting until the
projection has folded the append) and follows a subscription for the events it
appended. Prints one JSON object with what it saw.

    examples/clients/python/setup.sh          # once: virtualenv and stubs
    target/python/bin/python examples/clients/python/client.py --node 127.0.0.1:7070

Options: --node HOST:PORT (default 127.0.0.1:7070, or DATAMESH_NODE without its
http://), --token-file FILE (or DATAMESH_TOKEN) for a node with tokens.
"""

import argparse
import json
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.environ.get("DATAMESH_PY_GEN", os.path.join(ROOT, "target", "python", "gen")))

import grpc  # noqa: E402
from datamesh.v1 import datamesh_pb2 as pb  # noqa: E402
from datamesh.v1 import datamesh_pb2_grpc as rpc  # noqa: E402

PROGRAM = """
event Deposited { account: string, amount: int }

projection py_balances {
  key account
  state { balance: int, deposits: int }
  on Deposited { balance += event.amount  deposits += 1 }
}
"""


def node_address(args):
    address = args.node or os.environ.get("DATAMESH_NODE", "127.0.0.1:7070")
    return address.removeprefix("http://")


def metadata(args):
    token = os.environ.get("DATAMESH_TOKEN")
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    return [("authorization", f"Bearer {token}")] if token else []


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node")
    parser.add_argument("--token-file")
    args = parser.parse_args()
    meta = metadata(args)
    with grpc.insecure_channel(node_address(args)) as channel:
        node = rpc.DataMeshStub(channel)
        node.Deploy(pb.DeployRequest(source=PROGRAM, origin="py_balances.dmp"), metadata=meta, timeout=30)

        # Two deposits to a fresh account, in one atomic append (idempotent by id).
        account = f"py-{uuid.uuid4().hex[:8]}"
        events = [
            pb.Event(type="Deposited", stream=f"account-{account}", id=f"{account}-{i}",
                     data=json.dumps({"account": account, "amount": amount}))
            for i, amount in enumerate([70, 30])
        ]
        appended = node.Append(pb.AppendRequest(events=events), metadata=meta, timeout=30)

        # Read your writes: wait until the projection has folded the append.
        doc = node.Get(pb.GetRequest(projection="py_balances", key=account,
                                     min_position=appended.head), metadata=meta, timeout=30)

        # Follow the log from the first appended event; stop after ours.
        seen = []
        stream = node.Subscribe(pb.SubscribeRequest(from_position=appended.positions[0]),
                                metadata=meta, timeout=30)
        for record in stream:
            if record.stream == f"account-{account}":
                seen.append({"position": record.position, "type": record.type,
                             "data": json.loads(record.data)})
            if len(seen) == len(events):
                stream.cancel()
                break

    print(json.dumps({
        "account": account,
        "positions": list(appended.positions),
        "head": appended.head,
        "document": json.loads(doc.document),
        "subscribed": seen,
    }))


if __name__ == "__main__":
    main()
