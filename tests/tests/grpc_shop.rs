//! The gRPC mapping against a realistic service Terminus did not write: the
//! shop API (proto/proto/terminus/shop/v1/shop.proto) on Python grpcio
//! (tests/grpc-python/shop_server.py), through the client and through the
//! whole gateway with tests/grpc-python/shop.graphql.
//!
//! Needs a Python with grpcio, grpcio-tools and grpcio-status:
//! `TERMINUS_PYTHON`, or the venv that scripts/ci.d/30-grpc-python.sh makes
//! at `.cache/venv`. Without one the tests fail; they are never skipped.

use futures_lite::StreamExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use terminus::config::Config;
use terminus::grpc::{GrpcUpstream, GrpcUpstreamConfig};
use terminus::server::{Running, Server};
use terminus_core::FailureKind;
use terminus_tests::*;

/// Generating the stubs and importing grpcio takes a few seconds on a busy
/// 2-core machine.
const STARTUP_BOUND: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Python to run the server with; panics with what to do when none is
/// set up.
fn python() -> PathBuf {
    let python = match std::env::var_os("TERMINUS_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => repo_root().join(".cache/venv/bin/python"),
    };
    let check = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, grpc_status"])
        .output();
    match check {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{} cannot import grpc, grpc_tools and grpc_status ({}): run \
             scripts/ci.d/30-grpc-python.sh, which installs tests/grpc-python/requirements.txt \
             into .cache/venv",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "no Python at {} ({error}): set TERMINUS_PYTHON or run scripts/ci.d/30-grpc-python.sh",
            python.display()
        ),
    }
}

/// The Python shop server; killed when dropped.
struct ShopServer {
    child: Child,
    port: u16,
    _lines: mpsc::Receiver<String>,
}

impl ShopServer {
    fn start() -> ShopServer {
        let root = repo_root();
        let mut child = Command::new(python())
            .arg(root.join("tests/grpc-python/shop_server.py"))
            .args(["--port", "0", "--max-seconds", "300", "--proto-root"])
            .arg(root.join("proto/proto"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tests/grpc-python/shop_server.py");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match lines.recv_timeout(STARTUP_BOUND) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the Python shop server did not start within {STARTUP_BOUND:?}");
            }
        };
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("the Python shop server said {line:?} instead of LISTENING <port>")
            });
        ShopServer {
            child,
            port,
            _lines: lines,
        }
    }

    fn upstream_config(&self) -> GrpcUpstreamConfig {
        GrpcUpstreamConfig {
            endpoint: format!("http://127.0.0.1:{}", self.port),
            protos: vec![repo_root().join("proto/proto/terminus/shop/v1/shop.proto")],
            includes: vec![repo_root().join("proto/proto")],
            call_timeout: Duration::from_secs(10),
            ..GrpcUpstreamConfig::default()
        }
    }
}

impl Drop for ShopServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FAIL: &str = "terminus.shop.v1.Diagnostics/Fail";

/// The canonical names of the gRPC status codes 1 to 16, in order.
const CODES: [&str; 16] = [
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `extensions.code` of each status code (the table in docs/schema.md).
const EXTENSION_CODES: [&str; 16] = [
    "UPSTREAM_CANCELLED",
    "UPSTREAM_ERROR",
    "BAD_USER_INPUT",
    "UPSTREAM_TIMEOUT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FORBIDDEN",
    "UPSTREAM_BUSY",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UPSTREAM_UNIMPLEMENTED",
    "UPSTREAM_ERROR",
    "UPSTREAM_UNAVAILABLE",
    "UPSTREAM_DATA_LOSS",
    "UNAUTHENTICATED",
];

#[test]
fn every_status_code_from_grpcio_keeps_its_meaning_and_details() {
    let server = ShopServer::start();
    let upstream = GrpcUpstream::new("shop", &server.upstream_config()).unwrap();
    smol::block_on(async {
        for (i, name) in CODES.iter().enumerate() {
            let code = i as i32 + 1;
            let failure = upstream
                .unary(
                    FAIL,
                    json!({"code": code, "message": format!("failed with {name}"), "withDetails": true}),
                )
                .await
                .unwrap_err();
            assert_eq!(
                failure.kind.code(),
                EXTENSION_CODES[i],
                "{name}: {failure:?}"
            );
            assert_eq!(failure.message, format!("failed with {name}"));
            assert_eq!(failure.extensions["grpcStatus"], *name, "{failure:?}");
            let details = &failure.extensions["details"];
            if *name == "INVALID_ARGUMENT" {
                assert_eq!(
                    details,
                    &json!([{
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": "code", "description": "asked to fail", "reason": ""}]
                    }])
                );
            } else {
                assert_eq!(
                    details[0]["@type"],
                    "type.googleapis.com/google.rpc.ErrorInfo"
                );
                assert_eq!(details[0]["reason"], *name);
                assert_eq!(details[0]["metadata"]["code"], code.to_string());
            }
        }
        // Without details: the status alone.
        let failure = upstream.unary(FAIL, json!({"code": 7})).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::PermissionDenied);
        assert_eq!(failure.extensions["grpcStatus"], "PERMISSION_DENIED");
        assert!(!failure.extensions.contains_key("details"), "{failure:?}");
        // A realistic one: an unknown SKU.
        let failure = upstream
            .unary(
                "terminus.shop.v1.Catalog/GetProduct",
                json!({"sku": "NOPE"}),
            )
            .await
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::NotFound);
        assert_eq!(
            failure.extensions["details"],
            json!([{
                "@type": "type.googleapis.com/google.rpc.ResourceInfo",
                "resourceType": "terminus.shop.v1.Product",
                "resourceName": "NOPE",
                "owner": "",
                "description": "no such SKU"
            }])
        );
    });
    assert_eq!(upstream.open_streams(), 0);
}

#[test]
fn proto_types_come_back_in_the_proto3_json_mapping() {
    let server = ShopServer::start();
    let upstream = GrpcUpstream::new("shop", &server.upstream_config()).unwrap();
    smol::block_on(async {
        let chair = upstream
            .unary(
                "terminus.shop.v1.Catalog/GetProduct",
                json!({"sku": "CHAIR-1"}),
            )
            .await
            .unwrap();
        assert_eq!(chair["price"]["units"], "9007199254740993");
        assert_eq!(chair["totalSold"], "18446744073709551615");
        assert_eq!(chair["thumbnail"], "iVBORwD/");
        assert_eq!(chair["createdAt"], "2024-05-01T12:30:00Z");
        assert_eq!(chair["warranty"], "31536000s");
        assert_eq!(chair["subtitle"], "Solid oak");
        assert_eq!(chair["stock"], 0);
        assert_eq!(
            chair["metadata"],
            json!({"designer": "Aalto", "years": [1932.0, 1933.0], "stackable": true})
        );
        assert_eq!(
            chair["attributes"],
            json!({"colour": "natural", "finish": "oiled"})
        );
        assert_eq!(chair["availableFrom"], "2030-01-01T00:00:00Z");
        assert_eq!(chair["state"], "ACTIVE");
        // A server stream of a realistic message.
        let mut events = upstream
            .server_streaming(
                "terminus.shop.v1.Orders/WatchOrder",
                json!({"id": "o-1", "everyMs": 5, "limit": 2}),
            )
            .await
            .unwrap();
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(first["seq"], "1");
        assert_eq!(first["status"], "PENDING");
        assert_eq!(first["detail"], json!({"step": 1.0}));
        assert_eq!(events.next().await.unwrap().unwrap()["status"], "PAID");
        assert!(events.next().await.is_none());
    });
}

/// The gateway serving tests/grpc-python/shop.graphql (or `sdl`) in front
/// of `server`, adjusted by `adjust`.
async fn shop_gateway(
    server: &ShopServer,
    sdl: Option<&str>,
    adjust: impl FnOnce(&mut Config),
) -> Result<Running, String> {
    let schema = match sdl {
        None => repo_root().join("tests/grpc-python/shop.graphql"),
        Some(sdl) => {
            let dir = std::env::temp_dir().join(format!(
                "terminus-shop-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("shop.graphql");
            std::fs::write(&path, sdl).unwrap();
            path
        }
    };
    let mut config = Config::with_schema(schema);
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config
        .grpc
        .insert("shop".to_owned(), server.upstream_config());
    adjust(&mut config);
    Server::start(config)
        .await
        .map_err(|error| error.to_string())
}

async fn post(addr: SocketAddr, query: &str, variables: Value) -> Value {
    post_with(addr, query, variables, &[]).await
}

async fn post_with(
    addr: SocketAddr,
    query: &str,
    variables: Value,
    headers: &[(&str, &str)],
) -> Value {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let (status, body) = http(
        addr,
        "POST",
        "/graphql",
        &all,
        &json!({"query": query, "variables": variables}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_gateway_serves_the_shop_types() {
    let server = ShopServer::start();
    smol::block_on(async {
        let running = shop_gateway(&server, None, |_| {}).await.unwrap();
        let addr = running.local_addr();
        let answer = post(
            addr,
            "{ product(sku: \"CHAIR-1\") { sku price { currency units nanos } sold thumbnail createdAt \
               metadata attributes subtitle stock warranty availableFrom backorderNote \
               dimensions { widthCm } state tags } }",
            json!({}),
        )
        .await;
        assert_eq!(
            answer,
            json!({"data": {"product": {
                "sku": "CHAIR-1",
                "price": {"currency": "EUR", "units": "9007199254740993", "nanos": 500000000},
                "sold": "18446744073709551615",
                "thumbnail": "iVBORwD/",
                "createdAt": "2024-05-01T12:30:00Z",
                "metadata": {"designer": "Aalto", "years": [1932.0, 1933.0], "stackable": true},
                "attributes": {"colour": "natural", "finish": "oiled"},
                "subtitle": "Solid oak",
                "stock": 0,
                "warranty": "31536000s",
                "availableFrom": "2030-01-01T00:00:00Z",
                "backorderNote": null,
                "dimensions": {"widthCm": 45.5},
                "state": "ACTIVE",
                "tags": ["wood", "seating"]
            }}})
        );
        // A oneof input (@oneOf), nested input objects, an enum and an int64
        // given as a string.
        let answer = post(
            addr,
            "query($f: ProductFilterInput) { products(filter: $f) { total products { sku } } }",
            json!({"f": {"query": {"skuPrefix": "LAMP"}, "state": "DISCONTINUED", "maxPrice": {"units": "100"}}}),
        )
        .await;
        assert_eq!(
            answer,
            json!({"data": {"products": {"total": "1", "products": [{"sku": "LAMP-2"}]}}})
        );
        // The whole request from one input argument, with a oneof member.
        let answer = post(
            addr,
            "mutation($o: CreateOrderInput!) { createOrder(input: $o) { id status paymentMethod \
               total { units } lineTotals receipt gift notes shipping { city } } }",
            json!({"o": {
                "customerId": "c-1",
                "lines": [{"sku": "CHAIR-1", "quantity": 2}],
                "shipping": {"line1": "1 Main St", "city": "Oslo", "countryCode": "NO"},
                "payment": {"bankTransfer": {"iban": "NO9386011117947"}},
                "notes": {"leaveAtDoor": true},
                "gift": true
            }}),
        )
        .await;
        let order = &answer["data"]["createOrder"];
        assert_eq!(order["status"], "PENDING", "{answer}");
        assert_eq!(order["paymentMethod"], "bank_transfer");
        assert_eq!(order["total"]["units"], "18014398509481986");
        assert_eq!(order["lineTotals"], json!({"CHAIR-1": "18014398509481986"}));
        assert_eq!(order["gift"], true);
        assert_eq!(order["notes"], json!({"leaveAtDoor": true}));
        assert_eq!(order["shipping"]["city"], "Oslo");
        // Errors keep their status, name and details, with the field's path.
        let answer = post(addr, "{ product(sku: \"NOPE\") { sku } }", json!({})).await;
        assert_eq!(answer["data"], json!({"product": null}));
        let error = &answer["errors"][0];
        assert_eq!(error["path"], json!(["product"]));
        assert_eq!(error["extensions"]["code"], "NOT_FOUND");
        assert_eq!(error["extensions"]["grpcStatus"], "NOT_FOUND");
        assert_eq!(error["extensions"]["details"][0]["resourceName"], "NOPE");
        let answer = post(
            addr,
            "mutation { createOrder(input: {customerId: \"c\", lines: []}) { id } }",
            json!({}),
        )
        .await;
        let error = &answer["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{answer}");
        assert_eq!(error["extensions"]["grpcStatus"], "INVALID_ARGUMENT");
        assert_eq!(
            error["extensions"]["details"][0]["fieldViolations"][0]["field"],
            "lines"
        );
        // A value GraphQL accepts but the proto field does not: the error
        // names the field's path and the proto field.
        let answer = post(
            addr,
            "mutation { createOrder(input: {customerId: \"c\", lines: [{sku: \"CHAIR-1\", quantity: -1}]}) { id } }",
            json!({}),
        )
        .await;
        let error = &answer["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{answer}");
        assert_eq!(error["path"], json!(["createOrder"]));
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("request field terminus.shop.v1.OrderLine.quantity"),
            "{answer}"
        );
        assert!(error["extensions"].get("grpcStatus").is_none(), "{answer}");
        for (i, name) in CODES.iter().enumerate() {
            let answer = post(
                addr,
                "query($c: Int!) { fail(code: $c) }",
                json!({"c": i + 1}),
            )
            .await;
            let error = &answer["errors"][0];
            assert_eq!(error["extensions"]["code"], EXTENSION_CODES[i], "{answer}");
            assert_eq!(error["extensions"]["grpcStatus"], *name, "{answer}");
        }
        // A subscription on a server stream, with 64-bit and JSON values.
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(subscribe(
                "w",
                "subscription { watchOrder(id: \"o-1\", everyMs: 5, limit: 3) { seq status detail } }",
            ))
            .await;
        for (seq, status) in [("1", "PENDING"), ("2", "PAID"), ("3", "SHIPPED")] {
            let event = client.recv().await;
            assert_eq!(
                event["payload"]["data"]["watchOrder"],
                json!({"seq": seq, "status": status, "detail": {"step": seq.parse::<f64>().unwrap()}}),
                "{event}"
            );
        }
        assert_eq!(client.recv().await["type"], "complete");
        let report = running.shutdown().await;
        assert_eq!(report.leaked_operations, 0);
    });
}

#[test]
fn a_schema_that_does_not_match_the_proto_refuses_to_start() {
    let server = ShopServer::start();
    let sdl = std::fs::read_to_string(repo_root().join("tests/grpc-python/shop.graphql")).unwrap();
    smol::block_on(async {
        for (from, to, expected) in [
            (
                "Catalog/GetProduct",
                "Catalog/GetProdct",
                "service terminus.shop.v1.Catalog has no method GetProdct (did you mean GetProduct?)",
            ),
            (
                "  featured: Boolean!",
                "  featurd: Boolean!",
                "response message terminus.shop.v1.Product has no field featurd",
            ),
            (
                "Orders/WatchOrder",
                "Orders/GetOrder",
                "a Subscription field needs a server-streaming method",
            ),
        ] {
            let broken = sdl.replacen(from, to, 1);
            let error = shop_gateway(&server, Some(&broken), |_| {})
                .await
                .expect_err("a mismatched schema refuses to start");
            assert!(error.contains("shop.graphql:"), "{error}");
            assert!(error.contains(expected), "{error}");
        }
    });
}

#[test]
fn the_schema_generated_from_the_proto_serves_without_edits() {
    // `terminus schema`, the command a user runs, from the built binary.
    let output = Command::new(terminus_binary())
        .args(["schema", "--upstream", "shop", "-I"])
        .arg(repo_root().join("proto/proto"))
        .arg("--proto")
        .arg(repo_root().join("proto/proto/terminus/shop/v1/shop.proto"))
        .output()
        .expect("terminus schema runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sdl = String::from_utf8(output.stdout).unwrap();
    assert!(sdl.contains("type Subscription {"), "{sdl}");
    let server = ShopServer::start();
    smol::block_on(async {
        let running = shop_gateway(&server, Some(&sdl), |_| {})
            .await
            .unwrap_or_else(|error| panic!("the generated schema serves: {error}\n{sdl}"));
        let addr = running.local_addr();
        let answer = post(
            addr,
            "{ product(sku: \"CHAIR-1\") { sku totalSold createdAt attributes price { units currency } availableFrom } \
               listProducts(filter: {query: {namePrefix: \"Desk\"}}) { total products { sku backorderNote } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            answer,
            json!({"data": {
                "product": {
                    "sku": "CHAIR-1",
                    "totalSold": "18446744073709551615",
                    "createdAt": "2024-05-01T12:30:00Z",
                    "attributes": {"colour": "natural", "finish": "oiled"},
                    "price": {"units": "9007199254740993", "currency": "EUR"},
                    "availableFrom": "2030-01-01T00:00:00Z"
                },
                "listProducts": {"total": "1", "products": [{"sku": "LAMP-2", "backorderNote": "ships in 3 weeks"}]}
            }})
        );
        let answer = post(
            addr,
            "mutation { createOrder(customerId: \"c\", lines: [{sku: \"LAMP-2\", quantity: 3}], \
               payment: {card: {token: \"tok\", expMonth: 1, expYear: 2030}}) { id paymentMethod total { units } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            answer["data"]["createOrder"]["paymentMethod"], "card",
            "{answer}"
        );
        assert_eq!(answer["data"]["createOrder"]["total"]["units"], "75");
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(subscribe(
                "s",
                "subscription { watchStock(skus: [\"LAMP-2\"], everyMs: 5, limit: 2) { sku quantity delta } }",
            ))
            .await;
        for quantity in ["99", "98"] {
            let event = client.recv().await;
            assert_eq!(
                event["payload"]["data"]["watchStock"],
                json!({"sku": "LAMP-2", "quantity": quantity, "delta": "-1"}),
                "{event}"
            );
        }
        assert_eq!(client.recv().await["type"], "complete");
        let report = running.shutdown().await;
        assert_eq!(report.leaked_operations, 0);
    });
}

#[test]
fn configured_metadata_reaches_grpcio() {
    let server = ShopServer::start();
    smol::block_on(async {
        let running = shop_gateway(&server, None, |config| {
            let shop = config.grpc.get_mut("shop").unwrap();
            shop.metadata.insert("x-api-key".into(), "k1".into());
            shop.forward_headers = vec!["Authorization".into(), "x-request-id".into()];
            shop.forward_init.insert("tenant".into(), "x-tenant".into());
        })
        .await
        .unwrap();
        let addr = running.local_addr();
        // POST: the selected headers and the static entry, nothing else.
        let answer = post_with(
            addr,
            "{ metadata }",
            json!({}),
            &[
                ("Authorization", "Bearer abc"),
                ("X-Request-Id", "r-1"),
                ("Cookie", "session=secret"),
            ],
        )
        .await;
        let metadata = &answer["data"]["metadata"];
        assert_eq!(metadata["x-api-key"], "k1", "{answer}");
        assert_eq!(metadata["authorization"], "Bearer abc");
        assert_eq!(metadata["x-request-id"], "r-1");
        assert!(metadata.get("cookie").is_none(), "{metadata}");
        assert!(metadata.get("x-tenant").is_none(), "{metadata}");
        // WebSocket: a connection_init field.
        let mut client = Client::connect(addr, &[TRANSPORT_WS]).await.unwrap();
        client
            .send(json!({"type": "connection_init", "payload": {"tenant": "acme", "secret": "no"}}))
            .await;
        assert_eq!(client.recv().await["type"], "connection_ack");
        client.send(subscribe("m", "{ metadata }")).await;
        let event = client.recv().await;
        let metadata = &event["payload"]["data"]["metadata"];
        assert_eq!(metadata["x-tenant"], "acme", "{event}");
        assert_eq!(metadata["x-api-key"], "k1");
        assert!(metadata.get("secret").is_none(), "{metadata}");
        assert!(metadata.get("authorization").is_none(), "{metadata}");
        assert_eq!(client.recv().await["type"], "complete");
        let report = running.shutdown().await;
        assert_eq!(report.leaked_operations, 0);
        // A name gRPC reserves is refused at start-up.
        let error = shop_gateway(&server, None, |config| {
            let shop = config.grpc.get_mut("shop").unwrap();
            shop.metadata.insert("grpc-timeout".into(), "1S".into());
        })
        .await
        .unwrap_err();
        assert!(error.contains("upstream shop"), "{error}");
    });
}
