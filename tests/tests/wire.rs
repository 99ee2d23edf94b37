//! The WebSocket wire, on raw sockets (a client library would hide or
//! refuse the bytes): every RFC 6455 violation gets its close code (1002,
//! 1007) through the core, and clients that stop reading are closed with
//! 1013 once their queued and unflushed bytes pass `max_outbound_bytes`,
//! while a bystander on the same gateway keeps its full rate.

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use terminus_core::protocol::close;
use terminus_tests::*;

fn closed_series(code: u16) -> String {
    format!("terminus_connections_closed_total{{code=\"{code}\"}}")
}

/// Opens a WebSocket by hand: the upgrade request, then the 101 response
/// read byte by byte so that nothing after it is consumed.
async fn raw_websocket(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.expect("connect");
    handshake(stream).await
}

/// A TCP connection to `addr` whose receive buffer is `bytes` (set before
/// connecting, so the kernel never grows it): a client that stops reading
/// holds little in its kernel, and the gateway's queue fills.
fn small_receive_buffer(addr: SocketAddr, bytes: i32) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("the test gateway listens on IPv4")
    };
    // SAFETY: plain socket calls on a descriptor this function owns; it
    // goes to the std TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let ok = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of!(bytes).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        assert_eq!(ok, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let ok = libc::connect(
            fd,
            std::ptr::addr_of!(sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(ok, 0, "connect: {}", std::io::Error::last_os_error());
        let std_stream = std::net::TcpStream::from_raw_fd(fd);
        TcpStream::try_from(std_stream).expect("register with smol")
    }
}

async fn handshake(mut stream: TcpStream) -> TcpStream {
    let request = "GET /graphql HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within(WAIT, "the 101 response", stream.read(&mut byte))
            .await
            .expect("read");
        assert_eq!(n, 1, "socket ended in the handshake: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// A client frame: `first` is the first byte (FIN, RSV bits, opcode).
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn text(payload: &str) -> Vec<u8> {
    frame(0x81, payload.as_bytes(), true)
}

/// Reads server frames until a close frame, the socket's end, or `limit`;
/// returns the close frame's code and reason.
async fn close_frame(stream: &mut TcpStream, limit: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // Parse what is here: server frames are unmasked.
        let mut at = 0;
        while got.len() >= at + 2 {
            let opcode = got[at] & 0x0f;
            let (len, header) = match got[at + 1] & 0x7f {
                126 if got.len() >= at + 4 => (
                    usize::from(u16::from_be_bytes([got[at + 2], got[at + 3]])),
                    4,
                ),
                127 if got.len() >= at + 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&got[at + 2..at + 10]);
                    (u64::from_be_bytes(n) as usize, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if got.len() < at + header + len {
                break;
            }
            let payload = &got[at + header..at + header + len];
            if opcode == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                return Some((code, reason));
            }
            at += header + len;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let read = async { Some(stream.read(&mut buf).await) }
            .or(async {
                smol::Timer::after(left).await;
                None
            })
            .await;
        match read {
            Some(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

#[test]
fn every_rfc6455_violation_gets_its_close_code() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.timeouts.close_linger = Duration::from_millis(300);
        })
        .await;
        let addr = gateway.addr();
        let init = text(r#"{"type":"connection_init"}"#);
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            (
                "invalid UTF-8 in a text frame",
                frame(0x81, &[b'{', 0xff, 0xfe, 0xfd, b'}'], true),
                close::INVALID_FRAME_PAYLOAD_DATA,
            ),
            (
                "invalid UTF-8 across fragments",
                [
                    frame(0x01, &[b'{', 0xe2], true),
                    frame(0x80, &[0x28, 0xa1, b'}'], true),
                ]
                .concat(),
                close::INVALID_FRAME_PAYLOAD_DATA,
            ),
            (
                "an unmasked client frame",
                frame(0x81, br#"{"type":"ping"}"#, false),
                close::PROTOCOL_ERROR,
            ),
            (
                "RSV1 set",
                frame(0xc1, br#"{"type":"ping"}"#, true),
                close::PROTOCOL_ERROR,
            ),
            (
                "RSV3 set on a ping",
                frame(0x99, b"", true),
                close::PROTOCOL_ERROR,
            ),
            (
                "an unknown data opcode",
                frame(0x83, b"x", true),
                close::PROTOCOL_ERROR,
            ),
            (
                "an unknown control opcode",
                frame(0x8b, b"", true),
                close::PROTOCOL_ERROR,
            ),
            (
                "a ping over 125 bytes",
                frame(0x89, &[b'p'; 126], true),
                close::PROTOCOL_ERROR,
            ),
            (
                "a fragmented ping",
                frame(0x09, b"p", true),
                close::PROTOCOL_ERROR,
            ),
            (
                "an orphan continuation",
                frame(0x80, b"{}", true),
                close::PROTOCOL_ERROR,
            ),
            (
                "a new text frame inside a fragmented one",
                [frame(0x01, b"{", true), frame(0x81, b"{}", true)].concat(),
                close::PROTOCOL_ERROR,
            ),
        ];
        let mut expected = std::collections::BTreeMap::<u16, f64>::new();
        for (what, bytes, code) in &cases {
            // Before the init, and after it with a live subscription.
            for initialised in [false, true] {
                let mut stream = raw_websocket(addr).await;
                if initialised {
                    stream.write_all(&init).await.expect("write");
                    let sub = r#"{"type":"subscribe","id":"s","payload":{"query":"subscription { ticks(everyMs: 50) { seq } }"}}"#;
                    stream.write_all(&text(sub)).await.expect("write");
                }
                stream.write_all(bytes).await.expect("write");
                let started = Instant::now();
                let got = close_frame(&mut stream, WAIT).await;
                let (got_code, reason) = got.unwrap_or_else(|| panic!("{what}: no close frame"));
                assert_eq!(
                    got_code, *code,
                    "{what} (initialised: {initialised}): {reason}"
                );
                assert!(!reason.is_empty(), "{what}: a close reason");
                // Then the socket ends, at the linger's deadline at the latest.
                let mut rest = [0u8; 256];
                let end = within(WAIT, "the socket's end", async {
                    loop {
                        match stream.read(&mut rest).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                let _: () = end;
                assert!(started.elapsed() < Duration::from_secs(3), "{what}");
                *expected.entry(*code).or_default() += 1.0;
            }
        }
        for (code, count) in expected {
            let (got, all) = wait_metric(addr, &closed_series(code), WAIT, |v| v == count).await;
            assert!(
                all,
                "{got} connections counted as closed with {code}, want {count}"
            );
        }
        let (operations, none) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 0.0).await;
        assert!(none, "terminus_operations stayed at {operations}");
        // The wire is still fine for a client that keeps the rules.
        let mut client = Client::ready(addr, TRANSPORT_WS).await;
        client
            .send(subscribe("q", r#"{ hello(name: "Ada") }"#))
            .await;
        assert_eq!(
            client.recv().await["payload"]["data"]["hello"],
            "Hello, Ada!"
        );
    });
}

/// How long the slow readers sit on the gateway next to the bystander.
const SLOW_READERS_FOR: Duration = Duration::from_secs(60);
/// How long the bystander runs alone first, to measure its full rate on
/// this machine as it is loaded now.
const ALONE_FOR: Duration = Duration::from_secs(10);

/// Reads the bystander's ticks for `window`: their count. Panics on any
/// error, close, or skipped tick.
async fn count_ticks(bystander: &mut Client, last_seq: &mut Option<i64>, window: Duration) -> u64 {
    let until = Instant::now() + window;
    let mut seen = 0u64;
    while Instant::now() < until {
        let message = within(Duration::from_secs(2), "the bystander's next tick", async {
            bystander.next_message().await
        })
        .await
        .unwrap_or_else(|closed| panic!("the bystander was closed: {closed:?}"));
        assert_eq!(message["type"], "next", "the bystander got {message}");
        let seq = message["payload"]["data"]["ticks"]["seq"]
            .as_i64()
            .expect("a seq");
        if let Some(last) = *last_seq {
            assert_eq!(seq, last + 1, "the bystander's ticks skipped");
        }
        *last_seq = Some(seq);
        seen += 1;
    }
    seen
}

#[test]
fn clients_that_stop_reading_are_closed_1013_and_nobody_else_notices() {
    smol::block_on(async {
        let gateway = DemoGateway::start(|config| {
            config.timeouts.close_linger = Duration::from_millis(500);
            // A debug build on a shared machine makes a few thousand ticks
            // per second, and the kernel's send buffer holds the first
            // ones: with the defaults (256 KiB, 1 MiB) the keep-alive
            // (1001, 25 s) could end the slow readers first.
            config.limits.socket_send_buffer_bytes = 32 * 1024;
            config.limits.max_outbound_bytes = 64 * 1024;
        })
        .await;
        let addr = gateway.addr();

        // The bystander: one subscription at 50 ticks/s, read as they come;
        // first alone, for its full rate here and now.
        let mut bystander = Client::ready(addr, TRANSPORT_WS).await;
        bystander
            .send(subscribe(
                "b",
                "subscription { ticks(everyMs: 20) { seq } }",
            ))
            .await;
        let mut last_seq = None;
        let alone = count_ticks(&mut bystander, &mut last_seq, ALONE_FOR).await;
        let counting = smol::spawn(async move {
            let seen = count_ticks(&mut bystander, &mut last_seq, SLOW_READERS_FOR).await;
            (seen, bystander)
        });

        // Ten clients that subscribe ten times to the fastest ticks there
        // are, each tick about 1.5 KB (50 aliases of its seq, at most
        // `max_query_aliases`), then never read again.
        let selection: String = (0..50)
            .map(|i| format!("slow_reader_tick_{i:08}: seq "))
            .collect();
        let started = Instant::now();
        let mut slow = Vec::new();
        for _ in 0..10 {
            let mut stream = handshake(small_receive_buffer(addr, 4096)).await;
            stream
                .write_all(&text(r#"{"type":"connection_init"}"#))
                .await
                .expect("write");
            for i in 0..10 {
                let sub = format!(
                    r#"{{"type":"subscribe","id":"{i}","payload":{{"query":"subscription {{ ticks(everyMs: 0) {{ {selection} }} }}"}}}}"#
                );
                stream.write_all(&text(&sub)).await.expect("write");
            }
            slow.push(stream);
        }
        if std::env::var_os("WIRE_DEBUG").is_some() {
            for _ in 0..6 {
                smol::Timer::after(Duration::from_secs(5)).await;
                let (_, page) = http(addr, "GET", "/metrics", &[], "").await;
                let lines: Vec<&str> = page
                    .lines()
                    .filter(|l| l.starts_with("terminus_") && !l.contains("_bucket"))
                    .collect();
                eprintln!("{:?}\n{}", started.elapsed(), lines.join("\n"));
            }
        }
        let (closed, all) = wait_metric(
            addr,
            &closed_series(close::TRY_AGAIN_LATER),
            SLOW_READERS_FOR,
            |v| v == 10.0,
        )
        .await;
        assert!(all, "{closed} slow readers closed with 1013, want 10");
        eprintln!(
            "all ten slow readers closed with 1013 within {:?}",
            started.elapsed()
        );

        let (seen, _bystander) = counting.await;
        let alone_rate = alone as f64 / ALONE_FOR.as_secs_f64();
        let rate = seen as f64 / SLOW_READERS_FOR.as_secs_f64();
        eprintln!(
            "bystander: {alone_rate:.1} ticks/s alone, {rate:.1} ticks/s next to the slow readers"
        );
        // The slow readers' hundred streams run in this same process and
        // executor (a debug build) until their 1013, which costs the
        // bystander's scheduling a little; a stall would cost far more.
        assert!(
            rate >= alone_rate * 0.8,
            "the bystander's rate fell from {alone_rate:.1}/s to {rate:.1}/s"
        );
        // The bystander's unbroken ticks say the shared upstream
        // connection never failed; it is still the only one.
        let upstream = metric(addr, "terminus_upstream_connections").await;
        assert_eq!(upstream, 1.0, "upstream connections");
        // Every slow reader's operations were cancelled: only the
        // bystander's is left.
        let (operations, one) = wait_metric(addr, "terminus_operations", WAIT, |v| v == 1.0).await;
        assert!(
            one,
            "terminus_operations is {operations}, want the bystander's 1"
        );
        drop(slow);
    });
}
