//! bench-client: one workload against a running bench server.
//!
//!     bench-client [--mode starttls|plain|immediate] [--cpu N] ADDR WORKLOAD [ARG...]
//!
//! Workloads: `info`, `down BYTES`, `up BYTES`, `ping COUNT`,
//! `sessions SECONDS CONCURRENCY`, `phases COUNT` (sessions one by one,
//! with the time of each phase in µs). ADDR is e.g. 127.0.0.1:2525.
//! The TLS client sends SNI `bench.example`, verifies nothing and never
//! resumes. bench-driver runs the same code for the table.

use s6_tls_bench::client::{self, Conn, Mode};
use s6_tls_bench::{stats, sys};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench-client [--mode starttls|plain|immediate] [--cpu N] ADDR \
         info | down BYTES | up BYTES | ping COUNT | phases COUNT | sessions SECONDS CONCURRENCY"
    );
    ExitCode::from(100)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut mode = Mode::StartTls;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let opt = args.remove(0);
        let Some(value) = (!args.is_empty()).then(|| args.remove(0)) else {
            return usage();
        };
        match opt.as_str() {
            "--mode" => match Mode::parse(&value) {
                Some(m) => mode = m,
                None => return usage(),
            },
            "--cpu" => match value.parse() {
                Ok(cpu) => {
                    if let Err(e) = sys::pin_to(cpu) {
                        eprintln!("bench-client: warning: unable to pin to CPU {cpu}: {e}");
                    }
                }
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    if args.len() < 2 {
        return usage();
    }
    let Ok(addr) = args[0].parse::<SocketAddr>() else {
        return usage();
    };
    let num = |i: usize| args.get(i).and_then(|w| w.parse::<u64>().ok());
    let config = client::client_config();
    let result = (|| -> std::io::Result<()> {
        match args[1].as_str() {
            "info" => {
                let mut conn = Conn::open(addr, mode, &config)?;
                println!("{}", conn.command("INFO")?);
                println!("{:?}", conn.negotiated());
                conn.quit()
            }
            "down" | "up" => {
                let n = num(2).ok_or_else(|| std::io::Error::other("BYTES?"))?;
                let mut conn = Conn::open(addr, mode, &config)?;
                let t = if args[1] == "down" {
                    conn.down(n)?
                } else {
                    conn.up(n)?
                };
                println!(
                    "{} {n} bytes in {:.3} s: {:.1} MB/s ({:?})",
                    args[1],
                    t.as_secs_f64(),
                    n as f64 / t.as_secs_f64() / 1e6,
                    conn.negotiated()
                );
                conn.quit()
            }
            "ping" => {
                let n = num(2).unwrap_or(2000) as usize;
                let mut conn = Conn::open(addr, mode, &config)?;
                let times: Vec<f64> = conn
                    .ping(n)?
                    .iter()
                    .map(|d| d.as_secs_f64() * 1e6)
                    .collect();
                println!(
                    "ping x{n}: median {:.1} us, p99 {:.1} us",
                    stats::median(&times),
                    stats::percentile(&times, 99.0)
                );
                conn.quit()
            }
            "phases" => {
                let n = num(2).unwrap_or(5);
                for _ in 0..n {
                    let phases = client::session_phases(addr, mode, &config)?;
                    let total: f64 = phases.iter().map(|p| p.1).sum();
                    let text: Vec<String> =
                        phases.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
                    println!("{} = {total:.0} us", text.join(", "));
                }
                Ok(())
            }
            "sessions" => {
                let secs = num(2).unwrap_or(10);
                let conc = num(3).unwrap_or(2) as usize;
                let r = client::sessions(addr, mode, client::client_config, conc, Duration::from_secs(secs));
                println!(
                    "{} sessions ({} errors) in {:.2} s: {:.1}/s",
                    r.sessions,
                    r.errors,
                    r.elapsed.as_secs_f64(),
                    r.per_second()
                );
                Ok(())
            }
            _ => Err(std::io::Error::other("unknown workload")),
        }
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-client: fatal: {e}");
            ExitCode::from(111)
        }
    }
}
