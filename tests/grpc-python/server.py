"""The demo services (terminus.demo.v1.Demo and Rooms) on Python grpcio.

A gRPC server that Terminus did not write, used by tests/tests/grpc_python.rs
as a foreign upstream. The Python stubs are generated at start-up from the
.proto with grpc_tools.protoc into a temporary folder, so nothing generated is
kept in the repository.

Prints "LISTENING <port>" on stdout once it serves, "CANCELLED Ticks" for
each Ticks stream the client reset, and exits when its
standard input closes (the test that started it is gone) or after
--max-seconds, whichever comes first, so it never outlives its test.
"""

import argparse
import importlib
import os
import queue
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from grpc_tools import protoc

PROTO = "terminus/demo/v1/demo.proto"

# Calls run on many threads; one lock keeps their stdout lines whole.
STDOUT_LOCK = threading.Lock()

# The Clock's epoch: seqs count whole periods since the server started
# (the rules of core/src/demo_service.rs).
EPOCH = time.monotonic()

# The rooms service's bounds, as RoomLimits' defaults in
# core/src/demo_service.rs (docs/schema.md, "The demo's fields").
MAX_ROOMS = 1000
MAX_SUBSCRIBERS = 100000
MAX_ROOM_NAME_BYTES = 64
MAX_TEXT_BYTES = 1024
SUBSCRIBER_QUEUE = 256


def say(line):
    """Writes one whole line to stdout for the test to read."""
    with STDOUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def generate_stubs(proto_root, out_dir):
    """Compiles the demo .proto into demo_pb2 / demo_pb2_grpc under out_dir."""
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            PROTO,
        ]
    )
    if status != 0:
        raise SystemExit(f"grpc_tools.protoc failed on {PROTO} (exit {status})")
    sys.path.insert(0, out_dir)
    messages = importlib.import_module("terminus.demo.v1.demo_pb2")
    services = importlib.import_module("terminus.demo.v1.demo_pb2_grpc")
    return messages, services


def make_servicer(messages, services):
    class Demo(services.DemoServicer):
        def Hello(self, request, context):
            name = request.name or "world"
            # The caller's claim, when the gateway forwards it as metadata
            # (tests/tests/grpc_python.rs, issue 14).
            user = dict(context.invocation_metadata()).get("x-user-id")
            suffix = f" (user {user})" if user else ""
            return messages.HelloReply(message=f"Hello, {name}!{suffix}")

        def Ticks(self, request, context):
            every = max(request.every_ms, 1) / 1000.0
            limit = request.limit if request.HasField("limit") else None
            fail_at = request.fail_at if request.HasField("fail_at") else None
            # grpcio runs this callback when the RPC ends for any reason. An
            # RPC that ends before the handler finished was reset by the
            # client: tell the test, which checks that dropping a stream
            # reaches the server. (Checking context.is_active() in the loop
            # misses a reset that lands while the handler is in `yield`.)
            finished = threading.Event()

            def on_end():
                if not finished.is_set():
                    say("CANCELLED Ticks")

            context.add_callback(on_end)
            seq = 1
            while limit is None or seq <= limit:
                time.sleep(every)
                if not context.is_active():
                    return
                if fail_at is not None and seq == fail_at:
                    finished.set()
                    context.abort(grpc.StatusCode.INTERNAL, f"tick {seq} failed on purpose")
                yield messages.Tick(seq=seq)
                seq += 1
            finished.set()

        def Clock(self, request, context):
            if request.every_ms < 1:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"clock everyMs must be at least 1, got {request.every_ms}",
                )
            period = request.every_ms
            now = int((time.monotonic() - EPOCH) * 1000)
            due = (now // period + 1) * period
            while context.is_active():
                wait = EPOCH + due / 1000.0 - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                seq = int((time.monotonic() - EPOCH) * 1000) // period
                if seq > 2**31 - 1:
                    return
                yield messages.Tick(seq=seq)
                due = (seq + 1) * period

    return Demo()


class Subscriber:
    """One Events stream: its queue of unread events, or why it failed."""

    def __init__(self):
        self.queue = queue.Queue(maxsize=SUBSCRIBER_QUEUE)
        self.failed = None


def check_room_name(name, context):
    size = len(name.encode("utf-8"))
    if size == 0:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "room name must not be empty")
    if size > MAX_ROOM_NAME_BYTES:
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"room name is {size} bytes, more than the {MAX_ROOM_NAME_BYTES} allowed",
        )


def make_rooms_servicer(messages, services):
    lock = threading.Lock()
    # room name -> [next seq, {subscribers}]
    rooms = {}
    counts = {"subscribers": 0}

    class Rooms(services.RoomsServicer):
        def Events(self, request, context):
            check_room_name(request.name, context)
            me = Subscriber()
            with lock:
                if counts["subscribers"] >= MAX_SUBSCRIBERS:
                    context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the rooms service holds its maximum of {MAX_SUBSCRIBERS} subscribers",
                    )
                if request.name not in rooms and len(rooms) >= MAX_ROOMS:
                    context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the rooms service holds its maximum of {MAX_ROOMS} rooms",
                    )
                rooms.setdefault(request.name, [1, set()])[1].add(me)
                counts["subscribers"] += 1
            # Headers now: the caller knows it is in the room.
            context.send_initial_metadata(())
            try:
                while context.is_active():
                    try:
                        event = me.queue.get(timeout=0.2)
                    except queue.Empty:
                        if me.failed:
                            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, me.failed)
                        continue
                    yield event
            finally:
                with lock:
                    counts["subscribers"] -= 1
                    room = rooms.get(request.name)
                    if room is not None:
                        room[1].discard(me)
                        if not room[1]:
                            del rooms[request.name]

        def Say(self, request, context):
            check_room_name(request.room, context)
            size = len(request.text.encode("utf-8"))
            if size > MAX_TEXT_BYTES:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"text is {size} bytes, more than the {MAX_TEXT_BYTES} allowed",
                )
            delivered = 0
            with lock:
                room = rooms.get(request.room)
                if room is None:
                    return messages.SayReply(ok=True, delivered=0)
                event = messages.RoomEvent(room=request.room, seq=room[0], text=request.text)
                room[0] += 1
                for member in list(room[1]):
                    try:
                        member.queue.put_nowait(event)
                        delivered += 1
                    except queue.Full:
                        # Too slow: it fails alone and leaves the room.
                        member.failed = f"room subscriber fell {SUBSCRIBER_QUEUE} events behind"
                        while not member.queue.empty():
                            member.queue.get_nowait()
                        room[1].discard(member)
                if not room[1]:
                    del rooms[request.room]
            return messages.SayReply(ok=True, delivered=delivered)

    return Rooms()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--proto-root", required=True, help=f"folder that holds {PROTO}")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long")
    parser.add_argument("--workers", type=int, default=32, help="concurrent calls served")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve TLS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="terminus-grpc-python-") as out_dir:
        messages, services = generate_stubs(os.path.abspath(args.proto_root), out_dir)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
        services.add_DemoServicer_to_server(make_servicer(messages, services), server)
        services.add_RoomsServicer_to_server(make_rooms_servicer(messages, services), server)
        address = f"127.0.0.1:{args.port}"
        if args.tls_cert:
            with open(args.tls_key, "rb") as key, open(args.tls_cert, "rb") as cert:
                pair = (key.read(), cert.read())
            client_ca = None
            if args.tls_client_ca:
                with open(args.tls_client_ca, "rb") as ca:
                    client_ca = ca.read()
            credentials = grpc.ssl_server_credentials(
                [pair],
                root_certificates=client_ca,
                require_client_auth=client_ca is not None,
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise SystemExit(f"could not listen on 127.0.0.1:{args.port}")
        server.start()
        say(f"LISTENING {port}")

        stdin_closed = threading.Event()

        def watch_stdin():
            sys.stdin.read()
            stdin_closed.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        stdin_closed.wait(timeout=args.max_seconds)
        server.stop(grace=None)


if __name__ == "__main__":
    main()
