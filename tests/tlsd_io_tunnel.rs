//! s6-tlsd-io: the tunnel. Every close rule of doc/s6-tlsd-io.md "Closing",
//! under TLS 1.3 and TLS 1.2, the inactivity and handshake timeouts, no
//! session resumption, TCP_NODELAY, and 64 MiB each way at once.
//!
//! Each test runs the real binary on an accepted loopback connection (fds
//! 0 and 1) with pipes on fds 3 (fdr) and 4 (fdw), driven by a rustls
//! client; see `common/mod.rs`.

mod common;

use common::*;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

const BOTH: [Versions; 2] = [Versions::Tls13, Versions::Tls12];

fn client(v: Versions) -> ClientSetup {
    ClientSetup::new().versions(v)
}

#[test]
fn echo_both_ways_then_clean_end() {
    for v in BOTH {
        let dir = TempDir::new("echo");
        let mut s = session(standard(&dir, &[]), &client(v), "localhost");
        s.client.send(b"hello").unwrap();
        assert_eq!(s.engine.app_read_exact(5), b"hello");
        s.engine.app_write(b"world").unwrap();
        assert_eq!(s.client.recv_exact(5), b"world");
        s.client.close_notify().unwrap();
        assert_eq!(s.engine.app_read_to_eof(), b"", "{v:?}");
        s.engine.close_app_in();
        let (rest, end) = s.client.recv_to_end();
        assert_eq!(rest, b"");
        assert_eq!(end.unwrap(), End::Eof, "{v:?}");
        s.engine.wait().assert_clean(0);
    }
}

/// Cleartext the application writes before the handshake is sent once it
/// completes (the application side is only read afterwards).
#[test]
fn cleartext_written_before_the_handshake_is_sent_after_it() {
    let dir = TempDir::new("early");
    let (client_sock, server_sock) = tcp_pair();
    let mut engine = standard(&dir, &[]).spawn(Some(server_sock));
    engine.app_write(b"written early").unwrap();
    engine.close_app_in();
    let mut c = TlsClient::new(client_sock, &ClientSetup::new(), "localhost");
    c.handshake().unwrap();
    let (data, end) = c.recv_to_end();
    assert_eq!(data, b"written early");
    assert_eq!(end.unwrap(), End::Eof);
    c.close_notify().unwrap();
    assert_eq!(engine.app_read_to_eof(), b"");
    engine.wait().assert_clean(0);
}

/// -s (the default): on the app's EOF, flush, half-close TCP without a
/// close_notify, and keep delivering what the client still sends.
#[test]
fn app_eof_with_s_half_closes_and_keeps_reading() {
    for args in [&[][..], &["-s"], &["--no-close-notify"], &["-S", "-s"]] {
        for v in BOTH {
            let dir = TempDir::new("half");
            let mut s = session(standard(&dir, args), &client(v), "localhost");
            s.client.send(b"request").unwrap();
            assert_eq!(s.engine.app_read_exact(7), b"request");
            s.engine.app_write(b"response").unwrap();
            s.engine.close_app_in();
            let (data, end) = s.client.recv_to_end();
            assert_eq!(data, b"response", "{args:?} {v:?}");
            assert_eq!(
                end.unwrap(),
                End::Eof,
                "{args:?} {v:?}: EOF without close_notify"
            );
            // The engine is still reading the peer.
            assert!(s.engine.is_running());
            s.client.send(b"more after the half-close").unwrap();
            assert_eq!(s.engine.app_read_exact(25), b"more after the half-close");
            s.client.close_notify().unwrap();
            assert_eq!(s.engine.app_read_to_eof(), b"");
            s.engine.wait().assert_clean(0);
        }
    }
}

/// -S under TLS 1.3: close_notify on the app's EOF, and full duplex kept:
/// the client's later data still reaches the app.
#[test]
fn app_eof_with_close_notify_tls13_keeps_full_duplex() {
    for args in [&["-S"][..], &["--close-notify"], &["-s", "-S"]] {
        let dir = TempDir::new("cn13");
        let mut s = session(standard(&dir, args), &client(Versions::Tls13), "localhost");
        s.engine.app_write(b"bye").unwrap();
        s.engine.close_app_in();
        let (data, end) = s.client.recv_to_end();
        assert_eq!(data, b"bye");
        assert_eq!(end.unwrap(), End::CloseNotify, "{args:?}");
        s.client.send(b"still talking").unwrap();
        assert_eq!(s.engine.app_read_exact(13), b"still talking");
        s.client.close_notify().unwrap();
        assert_eq!(s.engine.app_read_to_eof(), b"");
        s.engine.wait().assert_clean(0);
    }
}

/// -S under TLS 1.2: close_notify on the app's EOF, then the connection
/// ends: the app reads EOF and the engine exits without waiting for the
/// client.
#[test]
fn app_eof_with_close_notify_tls12_stops() {
    let dir = TempDir::new("cn12");
    let mut s = session(
        standard(&dir, &["-S"]),
        &client(Versions::Tls12),
        "localhost",
    );
    s.client.send(b"before").unwrap();
    assert_eq!(s.engine.app_read_exact(6), b"before");
    s.engine.app_write(b"bye").unwrap();
    s.engine.close_app_in();
    let (data, end) = s.client.recv_to_end();
    assert_eq!(data, b"bye");
    assert_eq!(end.unwrap(), End::CloseNotify);
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.wait().assert_clean(0);
}

/// The peer's close_notify: everything sent before it is delivered, then
/// the app reads EOF; the app can still answer (TLS 1.3 and 1.2).
#[test]
fn peer_close_notify_delivers_everything_then_eof() {
    for v in BOTH {
        let dir = TempDir::new("peercn");
        let mut s = session(standard(&dir, &[]), &client(v), "localhost");
        let data = Stream::bytes(7, 300_000);
        s.client.send(&data).unwrap();
        s.client.close_notify().unwrap();
        let got = s.engine.app_read_to_eof();
        assert_eq!(got.len(), data.len(), "{v:?}");
        assert!(got == data, "{v:?}: data differs");
        s.engine.app_write(b"late answer").unwrap();
        s.engine.close_app_in();
        let (answer, end) = s.client.recv_to_end();
        assert_eq!(answer, b"late answer", "{v:?}");
        assert_eq!(end.unwrap(), End::Eof);
        s.engine.wait().assert_clean(0);
    }
}

/// The peer's EOF without close_notify under -j (the default): all data
/// delivered, then EOF; a normal end.
#[test]
fn peer_eof_without_close_notify_with_j() {
    for args in [
        &[][..],
        &["-j"],
        &["--no-enforce-close-notify"],
        &["-J", "-j"],
    ] {
        for v in BOTH {
            let dir = TempDir::new("eofj");
            let mut s = session(standard(&dir, args), &client(v), "localhost");
            let data = Stream::bytes(8, 200_000);
            s.client.send(&data).unwrap();
            s.client.shutdown_write();
            let got = s.engine.app_read_to_eof();
            assert!(got == data, "{args:?} {v:?}: {} bytes", got.len());
            s.engine.app_write(b"answer").unwrap();
            s.engine.close_app_in();
            let (answer, end) = s.client.recv_to_end();
            assert_eq!(answer, b"answer");
            assert_eq!(end.unwrap(), End::Eof);
            s.engine.wait().assert_clean(0);
        }
    }
}

/// Under -J the same EOF is an error (98), after delivering what came
/// before it.
#[test]
fn peer_eof_without_close_notify_with_enforcement_is_98() {
    for args in [&["-J"][..], &["--enforce-close-notify"], &["-j", "-J"]] {
        for v in BOTH {
            let dir = TempDir::new("eofJ");
            let mut s = session(standard(&dir, args), &client(v), "localhost");
            let data = Stream::bytes(9, 200_000);
            s.client.send(&data).unwrap();
            s.client.shutdown_write();
            let got = s.engine.app_read_to_eof();
            assert!(got == data, "{args:?} {v:?}: {} bytes", got.len());
            s.engine
                .wait()
                .assert_fatal(98, "remote closed connection without a close_notify");
        }
    }
    // And a close_notify is still a clean end under -J.
    let dir = TempDir::new("eofJcn");
    let mut s = session(standard(&dir, &["-J"]), &ClientSetup::new(), "localhost");
    s.client.send(b"x").unwrap();
    s.client.close_notify().unwrap();
    s.client.shutdown_write();
    assert_eq!(s.engine.app_read_to_eof(), b"x");
    s.engine.close_app_in();
    s.engine.wait().assert_clean(0);
}

/// The app closes its reading end: the engine stops reading the peer, and
/// what the app still writes is delivered.
#[test]
fn app_closing_its_reading_end_keeps_its_writes() {
    for v in BOTH {
        let dir = TempDir::new("appstop");
        let mut s = session(standard(&dir, &[]), &client(v), "localhost");
        s.client.send(b"first").unwrap();
        assert_eq!(s.engine.app_read_exact(5), b"first");
        s.engine.close_app_out();
        s.client.send(b"nobody reads this").unwrap();
        let answer = Stream::bytes(10, 500_000);
        // The app keeps writing (more than the pipe and socket buffers
        // hold) after closing its reading end: all of it arrives.
        let app_in = s.engine.app_in.take().unwrap();
        let expected = answer.clone();
        let writer = std::thread::spawn(move || {
            write_all_fd(app_in.as_fd(), &expected, Instant::now() + DEADLINE).unwrap();
        });
        assert!(s.client.recv_exact(answer.len()) == answer, "{v:?}");
        writer.join().unwrap();
        // The app's EOF: the engine half-closes and, with nothing left
        // to move, exits.
        let (rest, end) = s.client.recv_to_end();
        assert_eq!(rest, b"");
        // Our FIN, not a reset, although the client's last data was
        // never read.
        assert_eq!(end.unwrap(), End::Eof);
        s.engine.wait().assert_clean(0);
    }
}

/// The app stops reading before the handshake, or right after it, before
/// any data arrives: the closing is noticed without a write failing, the
/// handshake still completes, and the app's data is still sent.
#[test]
fn app_closing_its_reading_end_first() {
    for before_handshake in [true, false] {
        let dir = TempDir::new("appstop0");
        let (client_sock, server_sock) = tcp_pair();
        let mut engine = standard(&dir, &[]).spawn(Some(server_sock));
        if before_handshake {
            engine.close_app_out();
        }
        let mut c = TlsClient::new(client_sock, &ClientSetup::new(), "localhost");
        c.handshake().unwrap();
        if !before_handshake {
            engine.close_app_out();
        }
        engine.app_write(b"one-way").unwrap();
        engine.close_app_in();
        let (data, end) = c.recv_to_end();
        assert_eq!(data, b"one-way", "before handshake: {before_handshake}");
        assert_eq!(end.unwrap(), End::Eof);
        engine.wait().assert_clean(0);
    }
}

/// The app goes away before the handshake without writing anything (it
/// died right after `Y`): nothing can move, so the engine ends at once,
/// even with a silent client and no timeout.
#[test]
fn app_gone_before_the_handshake_ends_the_engine() {
    let dir = TempDir::new("appgone");
    let (client_sock, server_sock) = tcp_pair();
    let mut engine = standard(&dir, &[]).spawn(Some(server_sock));
    engine.close_app_out();
    engine.close_app_in();
    engine.wait_within(Duration::from_secs(5)).assert_clean(0);
    drop(client_sock);
}

/// The app closes its writing end before the handshake without writing,
/// but keeps reading: the handshake completes, the client gets EOF (the
/// app's EOF), and what the client sends still reaches the app.
#[test]
fn app_eof_before_the_handshake_half_closes_after_it() {
    let dir = TempDir::new("appeof0");
    let (client_sock, server_sock) = tcp_pair();
    let mut engine = standard(&dir, &[]).spawn(Some(server_sock));
    engine.close_app_in();
    let mut c = TlsClient::new(client_sock, &ClientSetup::new(), "localhost");
    c.handshake().unwrap();
    c.send(b"still heard").unwrap();
    c.close_notify().unwrap();
    let (data, end) = c.recv_to_end();
    assert_eq!(data, b"");
    assert_eq!(end.unwrap(), End::Eof);
    assert_eq!(engine.app_read_to_eof(), b"still heard");
    engine.wait().assert_clean(0);
}

/// 64 MiB each way at the same time; SHA-256 computed by each sender and
/// each receiver, compared.
#[test]
fn bulk_64_mib_each_way_at_once() {
    const SIZE: u64 = 64 << 20;
    let dir = TempDir::new("bulk");
    let mut s = session(standard(&dir, &[]), &ClientSetup::new(), "localhost");
    let started = Instant::now();
    let app_in = s.engine.app_in.take().unwrap();
    let app_writer = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut stream = Stream::new(0x5eed_0001, SIZE);
        let mut sha = Sha256::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = stream.fill(&mut buf);
            if n == 0 {
                break;
            }
            sha.update(&buf[..n]);
            write_all_fd(app_in.as_fd(), &buf[..n], deadline).unwrap();
        }
        drop(app_in);
        sha.finish()
    });
    let app_out = s.engine.app_out.take().unwrap();
    let app_reader = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut sha = Sha256::new();
        let mut buf = vec![0; 256 * 1024];
        loop {
            match read_some(app_out.as_fd(), &mut buf, deadline).unwrap() {
                0 => return (sha.len, sha.finish()),
                n => sha.update(&buf[..n]),
            }
        }
    });
    let mut client_sent = Sha256::new();
    let mut client_got = Sha256::new();
    let mut stream = Stream::new(0x5eed_0002, SIZE);
    let end = s.client.duplex(
        |buf| {
            let n = stream.fill(buf);
            client_sent.update(&buf[..n]);
            n
        },
        |data| client_got.update(data),
        true,
    );
    assert_eq!(end, End::Eof, "-s: the app's EOF is a TCP half-close");
    let app_sent = app_writer.join().unwrap();
    let (app_len, app_got) = app_reader.join().unwrap();
    assert_eq!(client_got.len, SIZE);
    assert_eq!(client_sent.len, SIZE);
    assert_eq!(app_len, SIZE);
    assert_eq!(client_got.finish(), app_sent, "app -> client");
    assert_eq!(app_got, client_sent.finish(), "client -> app");
    s.engine.wait().assert_clean(0);
    eprintln!("2 x {SIZE} bytes moved in {:?}", started.elapsed());
}

/// -K during the handshake: a client that stops mid-hello is dropped with
/// 98 after the timeout.
#[test]
fn kimeout_during_the_handshake() {
    let hello = client_hello(&ClientSetup::new(), "localhost");
    for args in [&["-K", "300"][..], &["-K300"], &["--kimeout=300"]] {
        let dir = TempDir::new("kdur");
        let (mut client_sock, server_sock) = tcp_pair();
        let started = Instant::now();
        let mut engine = standard(&dir, args).spawn(Some(server_sock));
        std::io::Write::write_all(&mut client_sock, &hello[..hello.len() / 2]).unwrap();
        let exit = engine.wait_within(Duration::from_secs(10));
        assert!(started.elapsed() >= Duration::from_millis(300));
        exit.assert_fatal(98, "timed out");
        assert!(
            exit.stderr.contains("during the handshake"),
            "{}",
            exit.stderr
        );
    }
}

/// Without -K or --handshake-timeout, a stalled handshake waits (the test
/// checks it is still there, then kills it).
#[test]
fn stalled_handshake_without_timeouts_waits() {
    let hello = client_hello(&ClientSetup::new(), "localhost");
    let dir = TempDir::new("stall");
    let (mut client_sock, server_sock) = tcp_pair();
    let mut engine = standard(&dir, &[]).spawn(Some(server_sock));
    std::io::Write::write_all(&mut client_sock, &hello[..hello.len() / 2]).unwrap();
    engine.assert_running_after(Duration::from_millis(600));
    let exit = engine.kill();
    assert_eq!(exit.signal, Some(9));
    assert_eq!(exit.stderr, "");
}

/// -K after the handshake: data from either side resets the clock; with
/// none for the whole delay, 98.
#[test]
fn kimeout_after_the_handshake() {
    let dir = TempDir::new("kaft");
    let started = Instant::now();
    let mut s = session(
        standard(&dir, &["-K", "700"]),
        &ClientSetup::new(),
        "localhost",
    );
    // Keep traffic going for about three times the delay, alternating
    // sides, with gaps well under it.
    for i in 0..12 {
        std::thread::sleep(Duration::from_millis(150));
        if i % 2 == 0 {
            s.client.send(b"c").unwrap();
            assert_eq!(s.engine.app_read_exact(1), b"c");
        } else {
            s.engine.app_write(b"a").unwrap();
            assert_eq!(s.client.recv_exact(1), b"a");
        }
    }
    assert!(s.engine.is_running(), "activity must reset the -K clock");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    let idle = Instant::now();
    let exit = s.engine.wait_within(Duration::from_secs(10));
    assert!(idle.elapsed() >= Duration::from_millis(500));
    exit.assert_fatal(98, "timed out");
    assert!(
        exit.stderr.contains("after the handshake"),
        "{}",
        exit.stderr
    );
}

/// --handshake-timeout bounds the whole handshake, even when the client
/// keeps sending (so -K never fires).
#[test]
fn handshake_timeout_bounds_a_trickling_handshake() {
    let hello = client_hello(&ClientSetup::new(), "localhost");
    let dir = TempDir::new("hst");
    let (mut client_sock, server_sock) = tcp_pair();
    let started = Instant::now();
    let mut engine =
        standard(&dir, &["-K", "2000", "--handshake-timeout=500"]).spawn(Some(server_sock));
    // One byte every 50 ms: the hello would take over a minute.
    let mut exit = None;
    for byte in hello.iter().take(200) {
        if std::io::Write::write_all(&mut client_sock, &[*byte]).is_err() {
            break;
        }
        if let Some(e) = engine.try_wait_within(Duration::from_millis(50)) {
            exit = Some(e);
            break;
        }
    }
    let exit = exit.expect("the engine should have given up within 10 s");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(
        took < Duration::from_millis(2000),
        "-K must not be what fired: {took:?}"
    );
    exit.assert_fatal(98, "timed out: handshake not complete");
}

/// --handshake-timeout does not apply once the handshake is done.
#[test]
fn handshake_timeout_ends_with_the_handshake() {
    let dir = TempDir::new("hst2");
    let mut s = session(
        standard(&dir, &["--handshake-timeout=200"]),
        &ClientSetup::new(),
        "localhost",
    );
    s.engine.assert_running_after(Duration::from_millis(600));
    s.client.send(b"late").unwrap();
    assert_eq!(s.engine.app_read_exact(4), b"late");
    s.client.close_notify().unwrap();
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.close_app_in();
    s.engine.wait().assert_clean(0);
}

/// Without TICKETKEYFILE, no TLS 1.3 session tickets and no TLS 1.2
/// session ids: nothing could ever resume them.
#[test]
fn no_session_tickets_nor_session_ids() {
    for v in BOTH {
        let dir = TempDir::new("tickets");
        let setup = client(v);
        let mut s = session(standard(&dir, &[]), &setup, "localhost");
        // Data after the handshake: any ticket would have come before it.
        s.engine.app_write(b"x").unwrap();
        assert_eq!(s.client.recv_exact(1), b"x");
        s.engine.close_app_in();
        let _ = s.client.recv_to_end();
        s.client.close_notify().unwrap();
        s.engine.wait().assert_clean(0);
        use std::sync::atomic::Ordering::SeqCst;
        assert_eq!(setup.store.tls13_tickets.load(SeqCst), 0, "{v:?}");
        assert_eq!(setup.store.tls12_sessions.load(SeqCst), 0, "{v:?}");
    }
}

/// TCP_NODELAY is set on the network's write side.
#[test]
fn tcp_nodelay_is_set() {
    let dir = TempDir::new("nodelay");
    let (client_sock, server_sock) = tcp_pair();
    let probe = server_sock.try_clone().unwrap();
    assert!(!probe.nodelay().unwrap());
    let mut engine = standard(&dir, &[]).spawn(Some(server_sock));
    let mut c = TlsClient::new(client_sock, &ClientSetup::new(), "localhost");
    c.handshake().unwrap();
    c.send(b"ping").unwrap();
    assert_eq!(engine.app_read_exact(4), b"ping");
    assert!(probe.nodelay().unwrap(), "TCP_NODELAY on fd 1");
    drop(probe);
    c.close_notify().unwrap();
    engine.close_app_in();
    assert_eq!(engine.app_read_to_eof(), b"");
    engine.wait().assert_clean(0);
}

/// The engine holds exactly fds 0, 1, 2 and its operands (and closes the
/// notification descriptor after use).
#[test]
fn no_stray_descriptors() {
    let dir = TempDir::new("fds");
    let spawn = standard(&dir, &["-d", "5"]).notify(5);
    let mut s = session(spawn, &ClientSetup::new(), "localhost");
    assert!(!s.engine.read_notification().is_empty());
    s.client.send(b"x").unwrap();
    assert_eq!(s.engine.app_read_exact(1), b"x");
    assert_eq!(s.engine.open_fds(), vec![0, 1, 2, 3, 4]);
    s.client.close_notify().unwrap();
    s.engine.close_app_in();
    s.engine.wait().assert_clean(0);
}

/// TLS 1.3 key updates from the client are followed, traffic goes on.
#[test]
fn key_update_from_the_client() {
    let dir = TempDir::new("keyupdate");
    let mut s = session(standard(&dir, &[]), &client(Versions::Tls13), "localhost");
    for round in 0..3u8 {
        s.client.conn.refresh_traffic_keys().unwrap();
        s.client.send(&[round; 100]).unwrap();
        assert_eq!(s.engine.app_read_exact(100), [round; 100]);
        s.engine.app_write(&[round; 50]).unwrap();
        assert_eq!(s.client.recv_exact(50), [round; 50]);
    }
    s.client.close_notify().unwrap();
    assert_eq!(s.engine.app_read_to_eof(), b"");
    s.engine.close_app_in();
    s.engine.wait().assert_clean(0);
}

/// The engine's memory stays bounded when neither side reads: flow
/// control reaches the writers instead.
#[test]
fn memory_is_bounded_under_backpressure() {
    use std::io::Write as _;
    let dir = TempDir::new("backpressure");
    let mut s = session(standard(&dir, &[]), &ClientSetup::new(), "localhost");
    s.client.send(b"warm-up").unwrap();
    assert_eq!(s.engine.app_read_exact(7), b"warm-up");
    let kib = |engine: &Engine, field: &str| -> u64 {
        let v = engine.proc_status(field);
        v.trim_end_matches(" kB").trim().parse().unwrap()
    };
    let baseline = kib(&s.engine, "VmRSS");
    // "Full" is when the descriptor stays unwritable for a while.
    let stays_full = |fd: std::os::fd::BorrowedFd<'_>| {
        !wait_fd(
            fd,
            nix::poll::PollFlags::POLLOUT,
            Instant::now() + Duration::from_millis(200),
        )
    };
    // The client writes until its socket is full: the engine cannot
    // deliver (the app does not read), so it stops reading.
    let chunk = Stream::bytes(30, 64 * 1024);
    let mut client_sent = Sha256::new();
    s.client.sock.set_nonblocking(true).unwrap();
    'client: loop {
        if !s.client.conn.wants_write() {
            let n = s.client.conn.writer().write(&chunk).unwrap();
            client_sent.update(&chunk[..n]);
        }
        while s.client.conn.wants_write() {
            match s.client.conn.write_tls(&mut s.client.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stays_full(s.client.sock.as_fd()) {
                        break 'client;
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    // The app writes until its pipe is full: the client does not read.
    let mut app_sent = Sha256::new();
    let app_in = s.engine.app_in.take().unwrap();
    loop {
        match nix::unistd::write(&app_in, &chunk) {
            Ok(n) => app_sent.update(&chunk[..n]),
            Err(nix::errno::Errno::EAGAIN) => {
                if stays_full(app_in.as_fd()) {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    let grown = kib(&s.engine, "VmHWM").saturating_sub(baseline);
    assert!(grown < 4096, "the engine grew by {grown} KiB");
    // Far more than the engine's buffers went in each way.
    assert!(client_sent.len > 256 << 10, "{}", client_sent.len);
    assert!(app_sent.len > 256 << 10, "{}", app_sent.len);
    // Now both read: everything arrives.
    drop(app_in);
    s.client.sock.set_nonblocking(false).unwrap();
    let app_out = s.engine.app_out.take().unwrap();
    let expected = client_sent.len;
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut sha = Sha256::new();
        let mut buf = vec![0; 64 * 1024];
        while sha.len < expected {
            let n = read_some(app_out.as_fd(), &mut buf, deadline).unwrap();
            assert!(n > 0, "EOF after {} bytes", sha.len);
            sha.update(&buf[..n]);
        }
        (app_out, sha.finish())
    });
    let mut client_got = Sha256::new();
    let end = s.client.duplex(|_| 0, |d| client_got.update(d), true);
    assert_eq!(end, End::Eof);
    let (app_out, app_got) = reader.join().unwrap();
    assert_eq!(app_got, client_sent.finish());
    assert_eq!(client_got.finish(), app_sent.finish());
    assert_eq!(read_to_eof(app_out.as_fd()), b"");
    s.engine.wait().assert_clean(0);
}
