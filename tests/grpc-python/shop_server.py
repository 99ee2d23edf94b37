"""The shop services (terminus.shop.v1: Catalog, Orders, Inventory, Diagnostics) on Python grpcio.

A realistic upstream that Terminus did not write, used by
tests/tests/grpc_shop.rs: nested messages, enums, maps, oneofs, int64/uint64,
bytes, Timestamp, Duration, Struct, Value, wrappers, server streams, and calls
that fail with every status code, with google.rpc details. grpcio enforces
grpc-timeout as every standard server does.

The Python stubs are generated at start-up from proto/proto/terminus/shop/v1/shop.proto
with grpc_tools.protoc into a temporary folder. Prints "LISTENING <port>"
once it serves, "CANCELLED <Method>" for each stream the client reset, and
exits when its standard input closes or after --max-seconds.
"""

import argparse
import importlib
import os
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

PROTO = "terminus/shop/v1/shop.proto"

STDOUT_LOCK = threading.Lock()


def say(line):
    """Writes one whole line to stdout for the test to read."""
    with STDOUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def generate_stubs(proto_root, out_dir):
    """Compiles shop.proto (and the well-known types it imports) into out_dir."""
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            PROTO,
        ]
    )
    if status != 0:
        raise SystemExit(f"grpc_tools.protoc failed on {PROTO} (exit {status})")
    sys.path.insert(0, out_dir)
    messages = importlib.import_module("terminus.shop.v1.shop_pb2")
    services = importlib.import_module("terminus.shop.v1.shop_pb2_grpc")
    return messages, services


def abort(context, code, message, *details):
    """Ends the call with `code` and google.rpc details in grpc-status-details-bin."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    context.abort_with_status(rpc_status.to_status(status))


def watch_cancel(context, method):
    """Prints CANCELLED <method> if the call ends before `finished` is set."""
    finished = threading.Event()

    def on_end():
        if not finished.is_set():
            say(f"CANCELLED {method}")

    context.add_callback(on_end)
    return finished


def catalog(m):
    """The product catalogue, by SKU."""
    chair = m.Product(
        sku="CHAIR-1",
        name="Oak chair",
        price=m.Money(currency=m.EUR, units=9_007_199_254_740_993, nanos=500_000_000),
        state=m.ACTIVE,
        tags=["wood", "seating"],
        attributes={"colour": "natural", "finish": "oiled"},
        total_sold=18_446_744_073_709_551_615,
        thumbnail=b"\x89PNG\x00\xff",
        metadata=struct_pb2.Struct(),
        dimensions=m.Dimensions(width_cm=45.5, height_cm=90, depth_cm=50),
        rating=4.5,
        featured=True,
    )
    chair.created_at.FromJsonString("2024-05-01T12:30:00Z")
    chair.metadata.update({"designer": "Aalto", "years": [1932, 1933], "stackable": True})
    chair.subtitle.value = "Solid oak"
    chair.stock.value = 0
    chair.available_from.FromJsonString("2030-01-01T00:00:00Z")
    chair.warranty.FromJsonString("31536000s")
    lamp = m.Product(
        sku="LAMP-2",
        name="Desk lamp",
        price=m.Money(currency=m.USD, units=25),
        state=m.DISCONTINUED,
        tags=["light"],
        backorder_note="ships in 3 weeks",
    )
    lamp.created_at.FromJsonString("2023-01-02T03:04:05.250Z")
    return {product.sku: product for product in (chair, lamp)}


def make_servicers(m, s):
    products = catalog(m)
    orders = {}
    orders_lock = threading.Lock()

    class Catalog(s.CatalogServicer):
        def GetProduct(self, request, context):
            product = products.get(request.sku)
            if product is None:
                abort(
                    context,
                    grpc.StatusCode.NOT_FOUND,
                    f"no product {request.sku}",
                    error_details_pb2.ResourceInfo(
                        resource_type="terminus.shop.v1.Product",
                        resource_name=request.sku,
                        description="no such SKU",
                    ),
                )
            return product

        def ListProducts(self, request, context):
            if request.page_size < 0:
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "page_size must not be negative",
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field="page_size", description="must not be negative"
                            )
                        ]
                    ),
                )
            selected = []
            for product in products.values():
                f = request.filter
                if f.tags and not set(f.tags) & set(product.tags):
                    continue
                if f.state and product.state != f.state:
                    continue
                which = f.WhichOneof("query")
                if which == "name_prefix" and not product.name.startswith(f.name_prefix):
                    continue
                if which == "sku_prefix" and not product.sku.startswith(f.sku_prefix):
                    continue
                if f.HasField("max_price") and product.price.units > f.max_price.units:
                    continue
                selected.append(product)
            size = request.page_size or len(selected)
            return m.ListProductsResponse(products=selected[:size], total=len(selected))

    class Orders(s.OrdersServicer):
        def CreateOrder(self, request, context):
            if not request.lines:
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "an order needs at least one line",
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(
                                field="lines", description="at least one line is required"
                            )
                        ]
                    ),
                )
            total = 0
            line_totals = {}
            for line in request.lines:
                product = products.get(line.sku)
                if product is None:
                    abort(context, grpc.StatusCode.NOT_FOUND, f"no product {line.sku}")
                units = product.price.units * line.quantity
                total += units
                line_totals[line.sku] = units
            with orders_lock:
                order_id = f"o-{len(orders) + 1}"
                order = m.Order(
                    id=order_id,
                    customer_id=request.customer_id,
                    lines=request.lines,
                    status=m.PENDING,
                    total=m.Money(currency=m.EUR, units=total),
                    shipping=request.shipping,
                    line_totals=line_totals,
                    receipt=order_id.encode() + b"\x00\x01",
                    payment_method=request.WhichOneof("payment") or "",
                    notes=request.notes,
                )
                if request.HasField("gift"):
                    order.gift.value = request.gift.value
                order.created_at.FromJsonString("2025-02-03T04:05:06Z")
                orders[order_id] = order
            return order

        def GetOrder(self, request, context):
            with orders_lock:
                order = orders.get(request.id)
            if order is None:
                abort(context, grpc.StatusCode.NOT_FOUND, f"no order {request.id}")
            return order

        def WatchOrder(self, request, context):
            finished = watch_cancel(context, "WatchOrder")
            every = max(request.every_ms, 1) / 1000.0
            statuses = [m.PENDING, m.PAID, m.SHIPPED]
            seq = 1
            while request.limit == 0 or seq <= request.limit:
                time.sleep(every)
                if not context.is_active():
                    return
                event = m.OrderEvent(
                    order_id=request.id,
                    status=statuses[min(seq - 1, len(statuses) - 1)],
                    seq=seq,
                )
                event.at.FromJsonString("2025-02-03T04:05:06Z")
                event.detail.struct_value.update({"step": seq})
                yield event
                seq += 1
            finished.set()

    class Inventory(s.InventoryServicer):
        def GetStock(self, request, context):
            if request.sku not in products:
                abort(context, grpc.StatusCode.NOT_FOUND, f"no product {request.sku}")
            level = m.StockLevel(sku=request.sku, quantity=-3, delta=-9_000_000_000)
            level.updated_at.FromJsonString("2025-01-01T00:00:00Z")
            return level

        def WatchStock(self, request, context):
            finished = watch_cancel(context, "WatchStock")
            every = max(request.every_ms, 1) / 1000.0
            limit = request.limit.value if request.HasField("limit") else None
            seq = 1
            while limit is None or seq <= limit:
                time.sleep(every)
                if not context.is_active():
                    return
                for sku in request.skus or ["CHAIR-1"]:
                    level = m.StockLevel(sku=sku, quantity=100 - seq, delta=-1)
                    level.updated_at.FromJsonString("2025-01-01T00:00:00Z")
                    yield level
                seq += 1
            finished.set()

    class Diagnostics(s.DiagnosticsServicer):
        def Fail(self, request, context):
            code = next((c for c in grpc.StatusCode if c.value[0] == request.code), None)
            if code is None or code == grpc.StatusCode.OK:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"code {request.code} is not an error code")
            details = []
            if request.with_details:
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    details.append(
                        error_details_pb2.BadRequest(
                            field_violations=[
                                error_details_pb2.BadRequest.FieldViolation(
                                    field="code", description="asked to fail"
                                )
                            ]
                        )
                    )
                else:
                    details.append(
                        error_details_pb2.ErrorInfo(
                            reason=code.name, domain="shop.terminus.test", metadata={"code": str(request.code)}
                        )
                    )
            abort(context, code, request.message or code.name.lower(), *details)

        def EchoMetadata(self, request, context):
            return m.EchoMetadataReply(
                metadata={key: value for key, value in context.invocation_metadata() if not key.endswith("-bin")}
            )

    return Catalog(), Orders(), Inventory(), Diagnostics()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--proto-root", required=True, help=f"folder that holds {PROTO}")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="exit after this long")
    parser.add_argument("--workers", type=int, default=32, help="concurrent calls served")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="terminus-shop-python-") as out_dir:
        m, s = generate_stubs(os.path.abspath(args.proto_root), out_dir)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
        catalog_servicer, orders, inventory, diagnostics = make_servicers(m, s)
        s.add_CatalogServicer_to_server(catalog_servicer, server)
        s.add_OrdersServicer_to_server(orders, server)
        s.add_InventoryServicer_to_server(inventory, server)
        s.add_DiagnosticsServicer_to_server(diagnostics, server)
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
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
