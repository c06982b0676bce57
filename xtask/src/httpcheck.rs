//! `vireo-test: http-check DIR`: checks a server image from the host with a minimal HTTP/1.1
//! client over `std::net::TcpStream`, to 127.0.0.1 only.
//!
//! Every file under DIR is fetched on one keep-alive connection and compared byte for byte (and
//! `/` against `index.html`); on the same connection a missing file must give 404 and a `HEAD`
//! the file's length without a body; a fresh connection asks for a file with
//! `Connection: close` and must see the server close after it, and gets 405 for `POST`; a
//! malformed request must give 400 and a request head over 8 KiB 431, each followed by a close.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use crate::{sitetar, test::Tally};

/// The limit for connecting and for each read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest response head read.
const MAX_HEAD: usize = 16 * 1024;

/// A loopback port that was free a moment ago (QEMU binds it for its host forward).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// One parsed response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A connection to the server: requests go out one at a time, and each response is read whole
/// by its `Content-Length`.
struct Client {
    stream: TcpStream,
    /// Bytes received and not yet taken by a response.
    buf: Vec<u8>,
}

impl Client {
    fn connect(port: u16) -> Result<Self, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(Self {
            stream,
            buf: Vec::new(),
        })
    }

    /// Reads more bytes into the buffer; an error at the end of the stream.
    fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("the server closed the connection".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Sends `method path` with `extra` header lines and reads the response.
    fn request(&mut self, method: &str, path: &str, extra: &str) -> Result<Reply, String> {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
        self.send(req.as_bytes(), method == "HEAD")
    }

    /// Sends `bytes` as they are and reads the response (without a body when `head_only`).
    fn send(&mut self, bytes: &[u8], head_only: bool) -> Result<Reply, String> {
        self.stream
            .write_all(bytes)
            .map_err(|e| format!("write: {e}"))?;
        let head_len = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err("response head over 16 KiB".into());
            }
            self.fill()?;
        };
        let (status, headers) = parse_head(&self.buf[..head_len])?;
        self.buf.drain(..head_len);
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = reply
            .header("content-length")
            .ok_or("no Content-Length")?
            .parse()
            .map_err(|_| "bad Content-Length")?;
        if !head_only {
            while self.buf.len() < len {
                self.fill()?;
            }
            reply.body = self.buf.drain(..len).collect();
        }
        Ok(reply)
    }

    /// Whether the server closes the connection (reads end) with nothing more sent.
    fn closed_by_server(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.stream.read(&mut [0u8; 1]), Ok(0))
    }
}

/// Status code and headers of a response head (ending with the empty line).
fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| format!("bad header `{l}`"))?;
            Ok((n.trim().to_string(), v.trim().to_string()))
        })
        .collect::<Result<_, String>>()?;
    Ok((status, headers))
}

/// The checks' results: passes and failures counted, each failure described.
#[derive(Debug, Default)]
pub struct Report {
    pub tally: Tally,
    pub failures: Vec<String>,
}

impl Report {
    /// Counts `result`: a pass, or a failure described as `what: error`.
    pub fn check(&mut self, what: &str, result: Result<(), String>) {
        match result {
            Ok(()) => self.tally.passed += 1,
            Err(e) => {
                self.tally.failed += 1;
                self.failures.push(format!("{what}: {e}"));
            }
        }
    }
}

fn expect_file(reply: &Reply, want: &[u8]) -> Result<(), String> {
    if reply.status != 200 {
        return Err(format!("status {}", reply.status));
    }
    if reply.body != want {
        return Err(format!(
            "body of {} bytes differs from the file's {} bytes",
            reply.body.len(),
            want.len()
        ));
    }
    Ok(())
}

/// Runs every check against the server behind 127.0.0.1:`port`, serving the files under `site`.
pub fn run(port: u16, site: &Path) -> Report {
    let mut report = Report::default();
    let files = match sitetar::files(site) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => {
            report.check("site", Err(format!("no files under {}", site.display())));
            return report;
        }
        Err(e) => {
            report.check("site", Err(e));
            return report;
        }
    };
    let mut contents = Vec::new();
    for (rel, path) in &files {
        match std::fs::read(path) {
            Ok(data) => contents.push((format!("/{rel}"), data)),
            Err(e) => report.check(rel, Err(format!("reading {}: {e}", path.display()))),
        }
    }
    // One keep-alive connection for every file, then a 404 and a HEAD on it.
    match Client::connect(port) {
        Ok(mut c) => {
            for (url, data) in &contents {
                let r = c
                    .request("GET", url, "")
                    .and_then(|r| expect_file(&r, data));
                report.check(&format!("GET {url} (keep-alive)"), r);
            }
            if let Some((_, index)) = contents.iter().find(|(u, _)| u == "/index.html") {
                let r = c
                    .request("GET", "/", "")
                    .and_then(|r| expect_file(&r, index));
                report.check("GET / (keep-alive)", r);
            }
            let r = c.request("GET", "/no/such/file.html", "").and_then(|r| {
                (r.status == 404)
                    .then_some(())
                    .ok_or(format!("status {}", r.status))
            });
            report.check("GET of a missing file gives 404", r);
            let (url, data) = &contents[0];
            let r = c.request("HEAD", url, "").and_then(|r| {
                let len = r.header("content-length").unwrap_or_default();
                match (r.status, len.parse::<usize>()) {
                    (200, Ok(n)) if n == data.len() => Ok(()),
                    _ => Err(format!("status {}, Content-Length `{len}`", r.status)),
                }
            });
            report.check(&format!("HEAD {url}"), r);
            // A body after the HEAD's head would show up as garbage before this response.
            let r = c
                .request("GET", url, "")
                .and_then(|r| expect_file(&r, data));
            report.check(&format!("GET {url} after HEAD"), r);
        }
        Err(e) => report.check("keep-alive connection", Err(e)),
    }
    // A fresh connection: another method, then `Connection: close`.
    let (url, data) = contents.last().expect("not empty");
    let fresh = Client::connect(port).and_then(|mut c| {
        let r = c.request("POST", url, "Content-Length: 0\r\n")?;
        if r.status != 405 {
            return Err(format!("POST gave status {}, not 405", r.status));
        }
        let r = c.request("GET", url, "Connection: close\r\n")?;
        expect_file(&r, data)?;
        if !c.closed_by_server() {
            return Err("the server kept the connection after `Connection: close`".into());
        }
        Ok(())
    });
    report.check(&format!("fresh connection: POST, GET {url}, close"), fresh);
    // Requests the server cannot read: answered, then the connection closed.
    let long_header = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(9000));
    for (what, bytes, status) in [
        (
            "malformed request",
            b"GET\x01 / HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        ("request head over 8 KiB", long_header.into_bytes(), 431),
    ] {
        let r = Client::connect(port).and_then(|mut c| {
            let r = c.send(&bytes, false)?;
            if r.status != status {
                return Err(format!("status {}, not {status}", r.status));
            }
            if !c.closed_by_server() {
                return Err("the server kept the connection".into());
            }
            Ok(())
        });
        report.check(&format!("{what} gives {status} and a close"), r);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads() {
        let (status, headers) =
            parse_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 14\r\nX: a:b\r\n\r\n").unwrap();
        assert_eq!(status, 404);
        assert_eq!(
            headers,
            [
                ("Content-Length".to_string(), "14".to_string()),
                ("X".to_string(), "a:b".to_string())
            ]
        );
        assert!(parse_head(b"HTTP/1.0 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n").is_err());
    }

    /// Nobody listening: every check that needs the server fails, none passes.
    #[test]
    fn no_server_fails() {
        let site = crate::artifacts::workspace_root().join("kernel/examples/site");
        let report = run(free_port().unwrap(), &site);
        assert_eq!(report.tally.passed, 0);
        assert_eq!(report.tally.failed, 4, "{:?}", report.failures);
    }

    /// The client against a scripted server on loopback: framing by Content-Length across
    /// reads, HEAD without a body, and the close check.
    #[test]
    fn client_reads_responses_by_length() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            let mut read_heads = |s: &mut TcpStream, n: usize| {
                while seen.windows(4).filter(|w| w == b"\r\n\r\n").count() < n {
                    let k = s.read(&mut buf).unwrap();
                    seen.extend_from_slice(&buf[..k]);
                }
            };
            read_heads(&mut s, 1);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(b"lo").unwrap();
            read_heads(&mut s, 2);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        });
        let mut c = Client::connect(port).unwrap();
        let a = c.request("GET", "/a", "").unwrap();
        assert_eq!(a.body, b"hello");
        let b = c.request("HEAD", "/a", "").unwrap();
        assert_eq!((b.status, b.body.len()), (200, 0));
        server.join().unwrap();
        assert!(c.closed_by_server());
    }
}
