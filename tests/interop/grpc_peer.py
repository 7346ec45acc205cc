#!/usr/bin/python3
"""A real gRPC server and client (Debian's python3-grpcio) for sealgate's tests.

No generated code: methods take and return raw bytes.

  grpc_peer.py serve CERT KEY
      Serves /sealgate.Echo/Unary, /sealgate.Echo/Metadata and
      /sealgate.Echo/Stream over TLS on a free port of 127.0.0.1 and prints
      "PORT <n>". Unary echoes the request; a request "fail" answers NOT_FOUND
      with the message "no such order". Metadata answers the call's metadata
      as a JSON object (a request "unauthenticated": UNAUTHENTICATED).
      Stream reads "COUNT PAUSE" and sends COUNT messages, PAUSE seconds apart.

  grpc_peer.py call ADDR CA CERT KEY METHOD PAYLOAD
      Calls through ADDR (host:port) with mutual TLS, the server name
      "localhost". Prints "MSG <text> <seconds since start>" per message, then
      "OK" or "STATUS <code name> <details>".
"""

import json
import sys
import time
from concurrent import futures

import grpc


def serve(cert, key):
    def unary(request, context):
        if request == b"fail":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
        return b"echo:" + request

    def metadata(request, context):
        if request == b"unauthenticated":
            # How Pub/Sub answers a session that ended.
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "session expired")
        return json.dumps(dict(context.invocation_metadata())).encode()

    def stream(request, context):
        count, pause = request.decode().split()
        for i in range(int(count)):
            if i:
                time.sleep(float(pause))
            yield ("part-%d" % i).encode()

    handler = grpc.method_handlers_generic_handler(
        "sealgate.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Metadata": grpc.unary_unary_rpc_method_handler(metadata),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [(open(key, "rb").read(), open(cert, "rb").read())]
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


def call(addr, ca, cert, key, method, payload):
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    start = time.monotonic()
    with grpc.secure_channel(addr, creds, options=options) as channel:
        try:
            if method in ("Unary", "Metadata"):
                rpc = channel.unary_unary("/sealgate.Echo/" + method)
                # A credential of the client's own, which a gateway brokering
                # the upstream's must not pass on.
                own = [("accesstoken", "CLIENTGRPCTOKEN")] if method == "Metadata" else None
                out = rpc(payload.encode(), timeout=20, metadata=own)
                print("MSG %s %.2f" % (out.decode(), time.monotonic() - start))
            else:
                rpc = channel.unary_stream("/sealgate.Echo/Stream")
                for out in rpc(payload.encode(), timeout=20):
                    print("MSG %s %.2f" % (out.decode(), time.monotonic() - start), flush=True)
            print("OK")
        except grpc.RpcError as e:
            print("STATUS %s %s" % (e.code().name, e.details()))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:4])
    else:
        call(*sys.argv[2:8])
