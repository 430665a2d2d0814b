//! A real headless Chromium driven over WebDriver (W3C) through Debian's `chromedriver`: the
//! dashboard's tests load pages, read what a person would see, click, type and take
//! screenshots with it. The protocol is JSON over HTTP; this speaks the few commands the tests
//! need over a plain socket, so no browser-automation crate is pulled in.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, find_bin, spawn};

/// The key WebDriver names an element by in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver and the browser end (their process group) when it drops.
pub struct Browser {
    server: Server,
    session: String,
}

/// An element of the page the browser shows.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width`×`height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let driver = find_bin("chromedriver");
        let chromium = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or_else(|| {
                panic!(
                    "chromium not found; install with: apt-get install -y chromium chromium-driver"
                )
            });
        let dir = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let log = dir.path().join("chromedriver.log");
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}")).env("HOME", dir.path());
        let child = spawn(cmd, &log);
        let server = Server { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while call(port, "GET", "/status", None)
            .ok()
            .and_then(|v| v["value"]["ready"].as_bool())
            != Some(true)
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready after 20 s: {}",
                server.log("chromedriver.log")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = server.dir.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--no-first-run", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let answer = call(port, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("no session: {e}: {}", server.log("chromedriver.log")));
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "chromedriver refused a session: {answer}\n{}",
                    server.log("chromedriver.log")
                )
            })
            .to_owned();
        let b = Browser { server, session };
        b.set_viewport(width, height);
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let v = call(self.server.port, method, &full, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        if v["value"]["error"].is_string() {
            panic!("WebDriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The elements matching a CSS selector, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.cmd(
            "POST",
            "/elements",
            Some(&json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_owned())))
        .collect()
    }

    /// The first element matching `css`; fails the test with the page's text when none does.
    pub fn find(&self, css: &str) -> Element {
        self.find_all(css).into_iter().next().unwrap_or_else(|| {
            let source = self.source();
            panic!(
                "no element matches {css:?} on {}:\n{}",
                self.url(),
                source.get(..4000).unwrap_or(&source)
            )
        })
    }

    /// What a person reads in the element (rendered text, not markup).
    pub fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// An attribute of the element, as the markup has it.
    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None)
            .as_str()
            .map(str::to_owned)
    }

    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(&json!({})));
    }

    /// Clicks something that loads another page (a link, a form's button) and waits until the
    /// new page has loaded: a click does not always wait for the navigation it starts.
    pub fn click_to_load(&self, e: &Element) {
        self.script("window.__backstopOldPage = true; return null;");
        self.click(e);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.script(
                "return window.__backstopOldPage === undefined && document.readyState === 'complete';",
            );
            if state.as_bool() == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no new page loaded after the click (still {})",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Types `text` into an input or text area.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(&json!({"text": text})),
        );
    }

    /// Runs `script` in the page (WebDriver's execute/sync) and gives back its value.
    pub fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": []})),
        )
    }

    /// Makes the page's viewport `width`×`height` (the window is set so its inside fits).
    pub fn set_viewport(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(&json!({"width": width, "height": height})),
        );
        // Headless windows have no frame, but be exact: grow the window by what it lacks.
        let inner = self.script("return [window.innerWidth, window.innerHeight];");
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(u64::from(width)),
            inner[1].as_u64().unwrap_or(u64::from(height)),
        );
        if iw != u64::from(width) || ih != u64::from(height) {
            self.cmd(
                "POST",
                "/window/rect",
                Some(&json!({
                    "width": 2 * u64::from(width) - iw,
                    "height": 2 * u64::from(height) - ih,
                })),
            );
        }
    }

    /// The value of the cookie `name` the browser holds for the page's site.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let all = self.cmd("GET", "/cookie", None);
        all.as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_str().map(str::to_owned))
    }

    /// Whether the page is wider than the viewport (a person would have to scroll sideways).
    pub fn overflows_sideways(&self) -> bool {
        self.script("return document.documentElement.scrollWidth > window.innerWidth;")
            .as_bool()
            .unwrap_or(true)
    }

    /// Saves a PNG of the whole page (not just the viewport) to `path`.
    pub fn screenshot(&self, path: &Path) {
        // Grow the viewport to the page's height for a full-page picture, then put it back.
        let size = self.script(
            "return [window.innerWidth, window.innerHeight, document.documentElement.scrollHeight];",
        );
        let (w, h, full) = (
            size[0].as_u64().unwrap_or(1280) as u32,
            size[1].as_u64().unwrap_or(900) as u32,
            size[2].as_u64().unwrap_or(900) as u32,
        );
        self.set_viewport(w, full.clamp(h, 6000));
        let png = self.cmd("GET", "/screenshot", None);
        self.set_viewport(w, h);
        let bytes = base64_decode(png.as_str().unwrap_or(""));
        assert!(bytes.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(
            self.server.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

/// One WebDriver call: JSON in, JSON out, over a fresh connection.
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let body = body.map_or(String::new(), ToString::to_string);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open whatever the request says: read the header, then
    // exactly the body it announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed before the header ended".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut content = raw[split + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(n) => content.len() >= n,
            None if chunked => content.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        content.extend_from_slice(&buf[..n]);
    }
    if chunked {
        content = dechunk(&content);
    }
    serde_json::from_slice(&content)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&content)))
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..eol])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(raw.len());
        out.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or(&[]);
    }
    out
}

/// Standard base64 (screenshots come so).
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_chunks_decode() {
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }
}
