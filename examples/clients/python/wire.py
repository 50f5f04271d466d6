#!/usr/bin/env python3
"""A DataMesh wire protocol client in Python: the framing of the book's API page
(`book/src/node/api.md`, "The wire protocol"), the messages from the generated stubs.

Says hello, deploys a small program, sends a batch of appends pipelined on one
connection (all written before any answer is read), reads a document back
(read-your-writes), and makes one call the node refuses. Prints one JSON object with
what it saw.

    examples/clients/python/setup.sh          # once: virtualenv and stubs
    target/python/bin/python examples/clients/python/wire.py --node 127.0.0.1:7070
    target/python/bin/python examples/clients/python/wire.py --socket /path/node.sock

Options: --node HOST:PORT (the node's plaintext TCP port) or --socket PATH (its Unix
socket), --token-file FILE (or DATAMESH_TOKEN) for a node with tokens.
"""

import argparse
import json
import os
import socket
import struct
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.environ.get("DATAMESH_PY_GEN", os.path.join(ROOT, "target", "python", "gen")))

from datamesh.v1 import datamesh_pb2 as pb  # noqa: E402

MAGIC = b"DMW1"
HELLO, APPEND, GET, DEPLOY = 0, 1, 3, 5
HEADER = struct.Struct(">IIB")  # body length, call id, method (request) or code (response)

PROGRAM = """
event Deposited { account: string, amount: int }

projection py_wire_balances {
  key account
  state { balance: int, deposits: int }
  on Deposited { balance += event.amount  deposits += 1 }
}
"""


class WireError(Exception):
    """A call the node refused: its gRPC status code, message and details."""

    def __init__(self, code, message, details):
        super().__init__(f"status {code}: {message}")
        self.code, self.message, self.details = code, message, details


class Wire:
    def __init__(self, sock, token):
        self.sock = sock
        self.buffer = b""
        self.next_id = 1
        self.sock.sendall(MAGIC)
        self.call(HELLO, token.encode())

    def send(self, method, body):
        """Writes one request frame; returns its call id."""
        call_id = self.next_id
        self.next_id += 1
        self.sock.sendall(HEADER.pack(len(body), call_id, method) + body)
        return call_id

    def receive(self):
        """Reads one response frame: (call id, code, body)."""
        while True:
            if len(self.buffer) >= HEADER.size:
                length, call_id, code = HEADER.unpack_from(self.buffer)
                if len(self.buffer) >= HEADER.size + length:
                    body = self.buffer[HEADER.size:HEADER.size + length]
                    self.buffer = self.buffer[HEADER.size + length:]
                    return call_id, code, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the node closed the connection")
            self.buffer += chunk

    @staticmethod
    def result(code, body):
        if code == 0:
            return body
        (length,) = struct.unpack_from(">I", body)
        message = body[4:4 + length].decode()
        raise WireError(code, message, body[4 + length:])

    def call(self, method, body):
        call_id = self.send(method, body)
        got, code, reply = self.receive()
        assert got == call_id, (got, call_id)
        return self.result(code, reply)


def connect(args):
    if args.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(args.socket)
    else:
        host, port = (args.node or "127.0.0.1:7070").removeprefix("dmw://").rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    token = os.environ.get("DATAMESH_TOKEN", "")
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    return Wire(sock, token)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node")
    parser.add_argument("--socket")
    parser.add_argument("--token-file")
    args = parser.parse_args()
    wire = connect(args)
    wire.call(DEPLOY, pb.DeployRequest(source=PROGRAM, origin="py_wire.dmp").SerializeToString())

    # Ten appends pipelined: every frame is written before any answer is read; the
    # answers may come in any order and are matched by call id.
    account = f"pw-{uuid.uuid4().hex[:8]}"
    sent = {}
    for amount in range(1, 11):
        request = pb.AppendRequest(events=[pb.Event(
            type="Deposited", stream=f"account-{account}",
            data=json.dumps({"account": account, "amount": amount}))])
        sent[wire.send(APPEND, request.SerializeToString())] = amount
    positions = {}
    while len(positions) < len(sent):
        call_id, code, body = wire.receive()
        positions[call_id] = pb.AppendResponse.FromString(wire.result(code, body)).positions[0]
    head = max(positions.values()) + 1

    # Read your writes.
    doc = pb.GetResponse.FromString(wire.call(GET, pb.GetRequest(
        projection="py_wire_balances", key=account, min_position=head).SerializeToString()))

    # A refusal: the stream exists, so "no stream" does not hold.
    try:
        wire.call(APPEND, pb.AppendRequest(
            events=[pb.Event(type="Deposited", stream=f"account-{account}",
                             data=json.dumps({"account": account, "amount": 1}))],
            expected=[pb.ExpectedVersion(stream=f"account-{account}", no_stream=True)],
        ).SerializeToString())
        refused = None
    except WireError as e:
        refused = {"code": e.code, "message": e.message}

    print(json.dumps({
        "account": account,
        "positions": sorted(positions.values()),
        "document": json.loads(doc.document),
        "refused": refused,
    }))


if __name__ == "__main__":
    main()
