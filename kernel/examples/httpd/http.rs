//! HTTP/1.1 requests to responses: parsing with `httparse`, the status, headers and body of the
//! answer, and whether the connection stays open.

use alloc::{format, string::String};

use super::site::Site;

/// The largest request head accepted (request line and headers); a longer one is answered 431
/// and the connection closed.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Headers per request.
const MAX_HEADERS: usize = 32;

/// What to send back for one request.
#[derive(Debug)]
pub struct Response {
    /// Status line and headers, ending with the empty line.
    pub head: String,
    /// The body (empty for `HEAD`).
    pub body: &'static [u8],
    /// Close the connection once the response is sent.
    pub close: bool,
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug)]
pub enum Parsed {
    /// The request head is not complete yet.
    Partial,
    /// A complete request of `len` bytes (or an error) and its answer.
    Done {
        /// Bytes of the buffer the request used.
        len: usize,
        /// The answer.
        response: Response,
    },
}

/// Reads one request from the start of `buf` and answers it from `site`.
pub fn handle(buf: &[u8], site: &Site) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => return Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return error(buf.len(), 431);
        }
        Err(_) => return error(buf.len(), 400),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return error(len, 400);
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let connection = header("connection").unwrap_or_default();
    let has = |token: &str| {
        connection
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    // HTTP/1.1 keeps the connection by default, HTTP/1.0 only when asked to.
    let mut close = if version == 1 {
        has("close")
    } else {
        !has("keep-alive")
    };
    // A request body is not read: the connection closes after the answer, so that the body is
    // never taken for the next request.
    let has_body = header("transfer-encoding").is_some()
        || header("content-length").is_some_and(|v| v.trim_ascii() != b"0");
    close |= has_body;
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = status(405, close);
            r.head.insert_str(r.head.len() - 2, "Allow: GET, HEAD\r\n");
            return Parsed::Done { len, response: r };
        }
    };
    let Some(path) = site_path(target) else {
        return error(len, 400);
    };
    let response = match site.get(&path) {
        Some(body) => Response {
            head: head(200, "OK", content_type(&path), body.len(), close),
            body: if head_only { &[] } else { body },
            close,
        },
        None => {
            let mut r = status(404, close);
            if head_only {
                r.body = &[];
            }
            r
        }
    };
    Parsed::Done { len, response }
}

/// The archive path a request target names: query and fragment dropped, `/` and any directory
/// ending in `/` mapped to its `index.html`. `None` for a target that is neither an absolute path
/// nor an absolute `http://` URL.
fn site_path(target: &str) -> Option<String> {
    // The absolute form (`http://host/path`) names the same path.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_prefix('/')?;
    Some(if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        String::from(path)
    })
}

/// The media type of a file, by its extension.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn head(code: u16, reason: &str, content_type: &str, len: usize, close: bool) -> String {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "HTTP/1.1 {code} {reason}\r\nServer: vireo-httpd\r\nContent-Type: {content_type}\r\n\
         Content-Length: {len}\r\nConnection: {connection}\r\n\r\n"
    )
}

/// A response whose body is its status line's text.
fn status(code: u16, close: bool) -> Response {
    let (reason, body) = match code {
        400 => ("Bad Request", "400 Bad Request\n"),
        404 => ("Not Found", "404 Not Found\n"),
        405 => ("Method Not Allowed", "405 Method Not Allowed\n"),
        431 => (
            "Request Header Fields Too Large",
            "431 Request Header Fields Too Large\n",
        ),
        _ => ("Internal Server Error", "500 Internal Server Error\n"),
    };
    Response {
        head: head(code, reason, "text/plain; charset=utf-8", body.len(), close),
        body: body.as_bytes(),
        close,
    }
}

/// An answer to a request that cannot be read further: the connection closes after it.
fn error(len: usize, code: u16) -> Parsed {
    Parsed::Done {
        len,
        response: status(code, true),
    }
}
