//! Load and endurance through s6-ucspitlsd under ucspi-tcp's tcpserver,
//! with s6-tls-faultapp echoing and accounting every byte with SHA-256:
//!
//! - 200 concurrent sessions held open at once, traffic both ways;
//! - sequential sessions (500; 20,000 in an ignored long test): no growth in
//!   the super-server's descriptors or processes, no zombies;
//! - s6-tlsd-io's memory stays flat over a 256 MiB transfer each way;
//! - 4 GiB each way through one session (an ignored long test, which CI
//!   runs by name).
//!
//! Results of the long runs are recorded in doc/testing.md.

#[path = "faults/harness.rs"]
mod harness;

use harness::*;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

#[test]
fn concurrent_200_sessions_with_traffic_both_ways() {
    const N: usize = 200;
    const PAYLOAD: u64 = 256 * 1024 + 17;
    let server = Server::start_spec(&ServerSpec {
        prog: &[faultapp_exe(), "echo"],
        concurrency: 250,
        ..Default::default()
    });
    let fds = server.fd_count();
    let started = Instant::now();
    // Every session is established before any moves data; then all move
    // data at once.
    let barrier = Arc::new(Barrier::new(N + 1));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(N);
    let mut established = 0;
    for _ in 0..N {
        let barrier = barrier.clone();
        let ready = ready_tx.clone();
        let port = server.port;
        threads.push(std::thread::spawn(move || {
            let mut sock = connect(port);
            let pids = faultapp_starttls(&mut sock);
            let mut client = Client::new(sock, client_config());
            let shake = client.handshake(T);
            ready.send(()).unwrap();
            barrier.wait();
            shake.expect("handshake");
            let out = client.run(&mut Plan {
                send: PAYLOAD,
                after: AfterSend::CloseNotify,
                timeout: T,
                ..Default::default()
            });
            (pids, out)
        }));
        // At most 8 handshakes in flight: tcpserver's listen backlog is 20.
        if threads.len() - established < 8 {
            continue;
        }
        ready_rx.recv_timeout(T).expect("session established");
        established += 1;
    }
    while established < N {
        ready_rx.recv_timeout(T).expect("session established");
        established += 1;
    }
    let open = server.descendants().len();
    barrier.wait();
    let established = started.elapsed();
    // Every thread said it was ready: none can be waiting for a
    // handshake any more.
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("session thread"))
        .collect();
    let transferred = started.elapsed();
    let mut exits = std::collections::BTreeMap::new();
    for (pids, out) in &results {
        assert!(
            !out.timed_out && out.send_error.is_none(),
            "{out:?}\n{}",
            server.log()
        );
        assert_eq!(out.progress.sent, PAYLOAD);
        assert_eq!(
            (out.progress.received, &out.received_sha),
            (PAYLOAD, &out.sent_sha)
        );
        let report = server.report(pids.prog, T).expect("report");
        assert_eq!(
            (report.in_bytes, &report.in_sha, report.end.as_str()),
            (PAYLOAD, &out.sent_sha, "eof")
        );
        *exits
            .entry(format!("{:?}", reap(pids.engine, T)))
            .or_insert(0) += 1;
    }
    assert!(server.wait_idle(T), "{:?}", server.descendants());
    assert_eq!(server.fd_count(), fds);
    eprintln!(
        "200 sessions: {open} processes under tcpserver at once, all established in {established:?}, \
         all done in {transferred:?}; engine exits {exits:?}"
    );
    // 200 progs and 200 engines were there at the same time.
    assert_eq!(open, 2 * N, "processes under tcpserver while all were open");
    assert_eq!(exits.get("Some(Code(0))"), Some(&N), "{exits:?}");
}

fn sequential_sessions(n: usize) {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let own_fds = fd_count(std::process::id() as i32);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut engines = std::collections::HashSet::new();
    for i in 0..n {
        let (mut client, pids) = faultapp_session(&server);
        engines.insert(pids.engine);
        let out = client.run(&mut Plan {
            send: 1000 + (i as u64 % 7) * 1000,
            timeout: T,
            ..Default::default()
        });
        assert_eq!(
            (out.progress.received, &out.received_sha),
            (out.progress.sent, &out.sent_sha),
            "session {i}: {out:?}"
        );
        drop(client);
        assert_eq!(
            reap(pids.engine, T),
            Some(Exit::Code(0)),
            "session {i}\n{}",
            server.log()
        );
        if (i + 1) % 100 == 0 || i + 1 == n {
            assert!(
                server.wait_idle(T),
                "session {i}: {:?}",
                server.descendants()
            );
            // No zombie anywhere: not under tcpserver, and none of this
            // test's engines (the other tests of this file run beside it
            // and reap their own engines in their own time).
            let zombies: Vec<i32> = server
                .descendants()
                .into_iter()
                .chain(
                    children(std::process::id() as i32)
                        .into_iter()
                        .filter(|p| engines.contains(p)),
                )
                .filter(|&p| state(p) == Some('Z'))
                .collect();
            assert!(zombies.is_empty(), "session {i}: zombies {zombies:?}");
            let now = server.fd_count();
            assert_eq!(now, fds, "session {i}: tcpserver descriptors");
            samples.push((i + 1, now, started.elapsed()));
        }
    }
    let elapsed = started.elapsed();
    // The log must not grow with errors either.
    let log = server.log();
    assert!(!log.contains("fatal"), "{log}");
    assert_eq!(log.matches("tcpserver: end ").count(), n);
    assert!(
        !log.lines()
            .any(|l| l.starts_with("tcpserver: end ") && !l.ends_with(" status 0")),
        "a prog failed"
    );
    let own_after = fd_count(std::process::id() as i32);
    eprintln!(
        "{n} sequential sessions in {elapsed:?} ({:.1} per second); tcpserver fds {fds} throughout; \
         test process fds {own_fds} -> {own_after}; samples (sessions, fds, time): {:?}",
        n as f64 / elapsed.as_secs_f64(),
        samples.iter().rev().take(3).collect::<Vec<_>>()
    );
}

#[test]
fn sequential_500_sessions() {
    sequential_sessions(500);
}

#[test]
#[ignore = "long (about half an hour): cargo test --test load -- --ignored"]
fn sequential_20000_sessions_long() {
    sequential_sessions(20_000);
}

/// One echo session moving `total` bytes each way; samples s6-tlsd-io's
/// VmRSS once 16 MiB came back, then up to the end.
fn bulk_echo(total: u64, timeout: Duration) -> (u64, u64, u64, Duration) {
    let server = Server::start(&[], &[faultapp_exe(), "echo"]);
    let fds = server.fd_count();
    let (mut client, pids) = faultapp_session(&server);
    let mut early = None;
    let mut last = 0;
    let mut max = 0;
    let mut next_sample = 16 * MIB;
    let mut hook = |_: &mut rustls::ClientConnection, p: &Progress| {
        if p.received >= next_sample {
            next_sample += 16 * MIB;
            if let Some(rss) = rss_kib(pids.engine) {
                early.get_or_insert(rss);
                last = rss;
                max = max.max(rss);
            }
        }
        true
    };
    let out = client.run(&mut Plan {
        send: total,
        after: AfterSend::CloseNotify,
        hook: Some(&mut hook),
        timeout,
        ..Default::default()
    });
    let end = finish(&server, pids, fds, T);
    let log = server.log();
    assert!(!out.timed_out && out.send_error.is_none(), "{out:?}\n{log}");
    assert_eq!(end.engine, Some(Exit::Code(0)), "{log}");
    assert_eq!(
        (out.progress.sent, out.progress.received, &out.received_sha),
        (total, total, &out.sent_sha)
    );
    // Checksums at both ends: what the application got and sent back.
    let report = server.report(pids.prog, T).expect("report");
    assert_eq!(
        (
            report.in_bytes,
            &report.in_sha,
            report.out_bytes,
            &report.out_sha
        ),
        (total, &out.sent_sha, total, &out.received_sha),
        "{log}"
    );
    (early.expect("sampled"), last, max, out.elapsed)
}

#[test]
fn engine_memory_stays_flat_over_256_mib_each_way() {
    let (early, last, max, took) = bulk_echo(256 * MIB, Duration::from_secs(90));
    eprintln!(
        "256 MiB each way in {took:?}: s6-tlsd-io VmRSS {early} KiB after 16 MiB, {last} KiB at the end, {max} KiB max"
    );
    assert!(max <= early + 512, "grew from {early} to {max} KiB");
    assert!(max < 8 * 1024, "{max} KiB");
}

#[test]
#[ignore = "long (about a minute; CI runs it): cargo test --test load -- --ignored four_gib"]
fn four_gib_each_way_long() {
    let total = 4u64 << 30;
    let (early, last, max, took) = bulk_echo(total, Duration::from_secs(1800));
    let rate = 2.0 * total as f64 / took.as_secs_f64() / MIB as f64;
    eprintln!(
        "4 GiB each way in {took:?} ({rate:.0} MiB/s both directions together): \
         s6-tlsd-io VmRSS {early} KiB after 16 MiB, {last} KiB at the end, {max} KiB max"
    );
    assert!(max <= early + 512, "grew from {early} to {max} KiB");
}
