#!/usr/bin/env python3
"""What a stock gRPC tool sees of a DataMesh node, with no DataMesh code at all.

Uses only grpcio's own packages: server reflection (grpc_reflection's descriptor
database, which speaks the `v1alpha` protocol many tools still use) to list the
services and find the health service's methods; the standard health check; and
grpc_status to decode a refused deploy's details as a `google.rpc.Status`, whose typed
detail (a `datamesh.v1.DeployResponse`, found by reflection too) holds the
diagnostics. Prints one JSON object.

    target/python/bin/python examples/clients/python/stock_tools.py --node 127.0.0.1:7070
"""

import argparse
import json
import os

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node")
    args = parser.parse_args()
    address = (args.node or os.environ.get("DATAMESH_NODE", "127.0.0.1:7070")).removeprefix("http://")
    out = {}
    with grpc.insecure_channel(address) as channel:
        # Reflection (v1alpha): the services, and a service's methods by name.
        database = ProtoReflectionDescriptorDatabase(channel)
        out["services"] = sorted(database.get_services())
        pool = DescriptorPool(database)
        health = pool.FindServiceByName("grpc.health.v1.Health")
        out["health_methods"] = sorted(m.name for m in health.methods)
        datamesh = pool.FindServiceByName("datamesh.v1.DataMesh")
        out["datamesh_methods"] = len(datamesh.methods)

        # The standard health check.
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        out["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        # A refused deploy, called and decoded with classes built from reflection.
        request_type = message_factory.GetMessageClass(pool.FindMessageTypeByName("datamesh.v1.DeployRequest"))
        response_type = message_factory.GetMessageClass(pool.FindMessageTypeByName("datamesh.v1.DeployResponse"))
        deploy = channel.unary_unary(
            "/datamesh.v1.DataMesh/Deploy",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            deploy(request_type(source="event Broken { x: nosuchtype }", origin="broken.dmp"), timeout=10)
            out["deploy"] = "accepted"
        except grpc.RpcError as error:
            status = rpc_status.from_call(error)
            out["deploy_code"] = error.code().name
            out["status_code"] = status.code
            details = []
            for any_detail in status.details:
                kind = any_detail.TypeName()
                entry = {"type": kind}
                if kind == "datamesh.v1.DeployResponse":
                    detail = response_type()
                    any_detail.Unpack(detail)
                    entry["codes"] = [d.code for d in detail.diagnostics]
                details.append(entry)
            out["details"] = details
    print(json.dumps(out))


if __name__ == "__main__":
    main()
