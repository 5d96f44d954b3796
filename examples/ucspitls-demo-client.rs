//! ucspitls-demo-client: the client side of the demo, a worked example of
//! the `s6_tls::ucspi` library under s6-ucspitlsc. It sends one message
//! to RECIPIENT through an SMTP server with STARTTLS:
//!
//! ```sh
//! tcpclient 127.0.0.1 2525 env CAFILE=ca.pem \
//!   s6-ucspitlsc -k localhost -- ucspitls-demo-client you@localhost
//! ```
//!
//! The cleartext phase is on fds 6/7, where the UCSPI client put the
//! connection; after the server's `220` to STARTTLS, the program sends
//! `Y`, and from then on talks through the tunnel. Every line the server
//! sends is copied to stdout, and the TLS parameters once the handshake
//! is done; the server's certificate has been verified by s6-ucspitlsc
//! before any of its encrypted replies arrive. Exits 0 when the server
//! said `221` to QUIT, 1 with a one-line message otherwise.

use s6_tls::ucspi::Ucspi;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One side of an SMTP conversation.
struct Smtp {
    reader: BufReader<File>,
    writer: File,
}

impl Smtp {
    /// Reads one reply (its lines up to the one without `-` after the
    /// code), echoes it to stdout, and checks its code.
    fn reply(&mut self, want: &str) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(format!("the server closed the connection (expected {want})").into());
            }
            let line = line.trim_end().to_owned();
            println!("{line}");
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                break;
            }
        }
        let last = lines.last().expect("one line at least");
        if !last.starts_with(want) {
            return Err(format!("expected {want}, got {last:?}").into());
        }
        Ok(lines)
    }

    fn command(&mut self, line: &str, want: &str) -> Result<Vec<String>> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply(want)
    }
}

fn run(recipient: &str) -> Result<()> {
    // SAFETY: fds 6 and 7 are the connection a UCSPI client gave us;
    // nothing else in this program uses them, and they are dropped (with
    // the cleartext session) before TLS starts.
    let (input, output) = unsafe {
        (
            File::from(OwnedFd::from_raw_fd(6)),
            File::from(OwnedFd::from_raw_fd(7)),
        )
    };
    let mut clear = Smtp {
        reader: BufReader::new(input),
        writer: output,
    };
    clear.reply("220")?;
    let offer = clear.command("EHLO localhost", "250")?;
    if !offer.iter().any(|l| {
        l.get(4..)
            .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
    }) {
        return Err("the server does not offer STARTTLS".into());
    }
    clear.command("STARTTLS", "220")?;
    // The server sends nothing after its 220 until our handshake starts,
    // so nothing of TLS can sit in our buffer; from now on the network
    // belongs to the helper.
    drop(clear);
    let tls = Ucspi::from_env()?.start_tls_with_info()?;
    println!(
        "-- TLS {} {}, server {}",
        tls.get("SSL_PROTOCOL").unwrap_or("-"),
        tls.get("SSL_CIPHER").unwrap_or("-"),
        tls.get("SSL_PEER_CERT_SUBJECT").unwrap_or("not verified"),
    );
    let mut smtp = Smtp {
        reader: BufReader::new(tls.reader),
        writer: tls.writer,
    };
    smtp.command("EHLO localhost", "250")?;
    smtp.command("MAIL FROM:<demo@localhost>", "250")?;
    smtp.command(&format!("RCPT TO:<{recipient}>"), "250")?;
    smtp.command("DATA", "354")?;
    smtp.command(
        &format!(
            "From: demo@localhost\r\nTo: {recipient}\r\nSubject: s6-tls demo\r\n\r\n\
             Sent with STARTTLS through s6-ucspitlsc.\r\n."
        ),
        "250",
    )?;
    smtp.command("QUIT", "221")?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [recipient] = &args[..] else {
        eprintln!("ucspitls-demo-client: usage: ucspitls-demo-client RECIPIENT");
        std::process::exit(100);
    };
    if let Err(e) = run(recipient) {
        // One write: the engine shares our stderr (eprintln! writes in pieces).
        let line = format!("ucspitls-demo-client: fatal: {e}\n");
        let _ = io::stderr().write_all(line.as_bytes());
        std::process::exit(1);
    }
    let _ = io::stdout().flush();
}
