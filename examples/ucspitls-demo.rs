//! ucspitls-demo: just enough SMTP for real clients (openssl s_client
//! -starttls smtp, swaks, Python's smtplib) to reach TLS through
//! s6-ucspitlsd, using the `s6_tls::ucspi` library. Mail is accepted and
//! thrown away; after STARTTLS the replies report the TLS parameters.

use s6_tls::ucspi::{Tls, Ucspi};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// Longest line we accept, CR LF included; longer ones are refused whole.
const MAX_LINE: u64 = 4096;

/// One line of input.
enum Line {
    Text(String),
    /// Longer than [`MAX_LINE`]: refused as a whole.
    TooLong,
}

struct Session {
    reader: BufReader<File>,
    writer: File,
    tls: Option<Tls>,
}

fn stdio() -> (File, File) {
    // SAFETY: fds 0 and 1 are the connection, given to us by the
    // super-server; nothing else in this program uses them.
    unsafe {
        (
            File::from(OwnedFd::from_raw_fd(0)),
            File::from(OwnedFd::from_raw_fd(1)),
        )
    }
}

impl Session {
    fn reply(&mut self, text: &str) -> io::Result<()> {
        self.writer.write_all(text.as_bytes())
    }

    /// One command line without its CR LF; `None` at EOF. A line longer
    /// than [`MAX_LINE`] is consumed to its end and comes back as
    /// [`Line::TooLong`]: its tail is never taken for a line of its own.
    fn command(&mut self) -> io::Result<Option<Line>> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Ok(None);
        }
        if line.last() != Some(&b'\n') && line.len() as u64 == MAX_LINE {
            self.skip_line()?;
            return Ok(Some(Line::TooLong));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Ok(Some(Line::Text(
            String::from_utf8_lossy(&line).into_owned(),
        )))
    }

    /// Discards input up to and including the next LF (or to EOF).
    fn skip_line(&mut self) -> io::Result<()> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(());
                }
                None => {
                    let n = buf.len();
                    self.reader.consume(n);
                }
            }
        }
    }

    fn tls_summary(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let field = |name| tls.get(name).unwrap_or("-").to_owned();
        Some(format!(
            "TLS {} {} SNI={}",
            field("SSL_PROTOCOL"),
            field("SSL_CIPHER"),
            field("SSL_TLS_SNI_SERVERNAME")
        ))
    }

    fn ehlo(&mut self, who: &str) -> io::Result<()> {
        let mut text = format!("250-s6-tls demo greets {who}\r\n");
        match self.tls_summary() {
            Some(summary) => text.push_str(&format!("250-{summary}\r\n")),
            None => text.push_str("250-STARTTLS\r\n"),
        }
        text.push_str("250 8BITMIME\r\n");
        self.reply(&text)
    }

    /// Switches to the TLS tunnel. Whatever the client sent after
    /// STARTTLS in cleartext is dropped with the old reader: it must never
    /// be taken for a command (the CVE-2011-0411 class of bugs).
    fn starttls(&mut self) -> io::Result<bool> {
        if self.tls.is_some() {
            self.reply("503 5.5.1 TLS already active\r\n")?;
            return Ok(true);
        }
        let ucspi = match Ucspi::from_env() {
            Ok(u) => u,
            Err(e) => {
                say("warning", &e.to_string());
                self.reply("454 4.7.0 TLS not available\r\n")?;
                return Ok(true);
            }
        };
        self.reply("220 2.0.0 Ready to start TLS\r\n")?;
        let discarded = self.reader.buffer().len();
        if discarded > 0 {
            say(
                "warning",
                &format!("discarded {discarded} bytes pipelined after STARTTLS"),
            );
        }
        let tls = match ucspi.start_tls_with_info() {
            Ok(tls) => tls,
            Err(e) => {
                say("fatal", &e.to_string());
                return Ok(false);
            }
        };
        self.reader = BufReader::new(tls.reader.try_clone()?);
        self.writer = tls.writer.try_clone()?;
        self.tls = Some(tls);
        Ok(true)
    }

    /// Reads a message up to its lone dot and throws it away.
    fn data(&mut self) -> io::Result<bool> {
        self.reply("354 End data with <CR><LF>.<CR><LF>\r\n")?;
        loop {
            match self.command()? {
                None => return Ok(false),
                Some(Line::Text(line)) if line == "." => break,
                Some(_) => {}
            }
        }
        self.reply("250 2.0.0 Message accepted and discarded\r\n")?;
        Ok(true)
    }

    fn serve(&mut self) -> io::Result<()> {
        self.reply("220 localhost ESMTP s6-tls demo\r\n")?;
        while let Some(line) = self.command()? {
            let Line::Text(line) = line else {
                self.reply("500 5.5.6 Line too long\r\n")?;
                continue;
            };
            let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let keep_going = match verb.to_ascii_uppercase().as_str() {
                "EHLO" => self.ehlo(rest).map(|_| true)?,
                "HELO" => self
                    .reply(&format!("250 s6-tls demo greets {rest}\r\n"))
                    .map(|_| true)?,
                "STARTTLS" => self.starttls()?,
                "NOOP" => {
                    let summary = self.tls_summary().unwrap_or_else(|| "cleartext".into());
                    self.reply(&format!("250 2.0.0 OK {rest} [{summary}]\r\n"))
                        .map(|_| true)?
                }
                "MAIL" | "RCPT" | "RSET" => self.reply("250 2.0.0 OK\r\n").map(|_| true)?,
                "DATA" => self.data()?,
                "QUIT" => {
                    self.reply("221 2.0.0 Bye\r\n")?;
                    false
                }
                _ => self
                    .reply("500 5.5.2 Command unrecognized\r\n")
                    .map(|_| true)?,
            };
            if !keep_going {
                break;
            }
        }
        Ok(())
    }
}

fn main() {
    let (input, output) = stdio();
    let mut session = Session {
        reader: BufReader::new(input),
        writer: output,
        tls: None,
    };
    if let Err(e) = session.serve() {
        say("fatal", &e.to_string());
        std::process::exit(111);
    }
}

/// One message line on stderr, in one write: the engine shares our
/// stderr, and `eprintln!` writes its pieces one by one, so its line
/// could be cut by the engine's.
fn say(level: &str, text: &str) {
    let line = format!("ucspitls-demo: {level}: {text}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}
