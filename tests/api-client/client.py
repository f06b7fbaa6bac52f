"""A client of vigil's API written elsewhere: Python's grpcio, with stubs generated from the
repository's .proto by grpcio-tools at start (nothing generated is kept).

    client.py TARGET [TLS] reflect
    client.py TARGET [TLS] stream BINARY_REGEX ARGS_REGEX COUNT
    client.py TARGET [TLS] add FILE | list | delete NAME | version
    client.py TARGET [TLS] search JSON | tree EXEC_ID

`search` takes a SearchRequest in protobuf's JSON mapping and prints the events' JSON, in the
order streamed; `tree` prints each process of the tree with its depth and events.

TARGET is unix:///path or host:port; TLS is `--tls CA CERT KEY` (`-` for CERT and KEY: no
client certificate). Each command prints one JSON document; a call the agent refuses prints
{"code": "<grpc status code>", "details": "..."} and exits 3.
"""

import json
import os
import sys
import tempfile

from grpc_tools import protoc
import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "api", "proto")


def stubs():
    out = tempfile.mkdtemp(prefix="vigil-stubs-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + PROTO, "-I" + include, "--python_out=" + out,
                      "--grpc_python_out=" + out, "vigil/v1/vigil.proto"])
    if rc != 0:
        sys.exit("protoc failed on vigil/v1/vigil.proto")
    sys.path.insert(0, out)
    from vigil.v1 import vigil_pb2, vigil_pb2_grpc
    return vigil_pb2, vigil_pb2_grpc


def channel(target, tls):
    if tls is None:
        # gRPC's C core names a unix socket's path as the HTTP/2 authority, percent-encoded,
        # which is not an authority; the agent's HTTP/2 server refuses it (PROTOCOL_ERROR).
        return grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")])
    ca, cert, key = tls
    read = lambda p: open(p, "rb").read() if p else None
    creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    return grpc.secure_channel(target, creds)


def policy_json(p):
    return {"name": p.name, "source": p.source, "state": p.state, "mode": p.mode,
            "hooks": [h.attach for h in p.hooks]}


def main(argv):
    target, argv = argv[0], argv[1:]
    tls = None
    if argv and argv[0] == "--tls":
        none = lambda p: None if p == "-" else p
        tls, argv = (argv[1], none(argv[2]), none(argv[3])), argv[4:]
    pb, rpc = stubs()
    ch = channel(target, tls)
    stub = rpc.VigilStub(ch)
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "reflect":
            from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
                ProtoReflectionDescriptorDatabase
            db = ProtoReflectionDescriptorDatabase(ch)
            services = sorted(db.get_services())
            vigil = db.FindFileContainingSymbol("vigil.v1.Vigil")
            print(json.dumps({"services": services, "vigil_file": vigil.name}))
        elif cmd == "stream":
            regex, args_regex, count = args[0], args[1], int(args[2])
            req = pb.GetEventsRequest(allow_list=[pb.Filter(
                binary_regex=[regex], arguments_regex=[args_regex])])
            got = []
            for r in stub.GetEvents(req, timeout=60):
                if r.WhichOneof("response") == "event":
                    e = r.event
                    got.append({"kind": e.kind, "binary": e.binary, "exec_id": e.exec_id,
                                "event": json.loads(e.json)})
                    if len(got) >= count:
                        break
            print(json.dumps(got))
        elif cmd == "add":
            r = stub.AddPolicy(pb.AddPolicyRequest(yaml=open(args[0]).read()))
            print(json.dumps(policy_json(r.policy)))
        elif cmd == "list":
            r = stub.ListPolicies(pb.ListPoliciesRequest())
            print(json.dumps([policy_json(p) for p in r.policies]))
        elif cmd == "delete":
            stub.DeletePolicy(pb.DeletePolicyRequest(name=args[0]))
            print(json.dumps({"deleted": args[0]}))
        elif cmd == "search":
            from google.protobuf import json_format
            req = json_format.ParseDict(json.loads(args[0]), pb.SearchRequest())
            got = []
            for r in stub.Search(req, timeout=60):
                if r.WhichOneof("response") == "event":
                    got.append(json.loads(r.event.json))
                else:
                    got.append({"count": r.count})
            print(json.dumps(got))
        elif cmd == "tree":
            got = []
            for r in stub.ProcessTree(pb.ProcessTreeRequest(exec_id=args[0], events=True), timeout=60):
                p = r.process
                got.append({"exec_id": p.exec_id, "depth": p.depth, "binary": p.binary,
                            "events": [json.loads(e.json) for e in p.events]})
            print(json.dumps(got))
        elif cmd == "version":
            r = stub.GetVersion(pb.GetVersionRequest())
            print(json.dumps({"version": r.version, "abi": r.abi}))
        else:
            sys.exit("unknown command " + cmd)
    except grpc.RpcError as e:
        print(json.dumps({"code": e.code().name, "details": e.details()}))
        sys.exit(3)


if __name__ == "__main__":
    main(sys.argv[1:])
