//! Cache sweeps, run as recovery steps (practice 6.4): what the bad version cached must not be
//! served by the good one.
//!
//! - **Redis**: every key matching a pattern, found with `SCAN … MATCH … COUNT` (never `KEYS`,
//!   which blocks the server) and removed with `UNLINK` (freed in the background), a batch at
//!   a time. Idempotent: a second sweep removes what matches then.
//! - **HTTP purge**: a `PURGE` request (Varnish, Fastly, nginx `proxy_cache_purge`); 2xx, or 404
//!   (nothing cached), is done.
//!
//! The Redis side speaks RESP2 itself: a handful of commands do not justify a client crate, and
//! the reply parser is fuzzed (any bytes give a value or an error, never a panic).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where a Redis sweep connects: `redis://[:PASSWORD@]HOST:PORT[/DB]` or `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host_port: String,
    pub password: Option<String>,
    pub db: u32,
}

impl RedisTarget {
    /// Reads a Redis address.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(text: &str) -> Result<RedisTarget, String> {
        let rest = text.strip_prefix("redis://").unwrap_or(text);
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let password = auth.map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_owned());
        let (host_port, db) = match rest.split_once('/') {
            Some((hp, db)) if !db.is_empty() => (
                hp,
                db.parse::<u32>()
                    .map_err(|_| format!("database {db:?} in {text:?} is not a number"))?,
            ),
            Some((hp, _)) => (hp, 0),
            None => (rest, 0),
        };
        let ok = host_port
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(format!(
                "{text:?} is not redis://[:PASSWORD@]HOST:PORT[/DB] (e.g. redis://cache.internal:6379/0)"
            ));
        }
        Ok(RedisTarget {
            host_port: host_port.to_owned(),
            password,
            db,
        })
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Parses one reply from the start of `buf`: the reply and the bytes it took, `Ok(None)` when
/// `buf` holds only part of one.
///
/// # Errors
/// Bytes that are not RESP2.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_at(buf, 0, 0)
}

/// Deeper arrays than this are refused (a hostile server cannot exhaust the stack).
const MAX_DEPTH: usize = 16;
/// More elements or bytes than this in one reply are refused.
const MAX_LEN: i64 = 64 * 1024 * 1024;

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(bytes: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a number: {:?}", String::from_utf8_lossy(bytes)))
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, String> {
    if depth > MAX_DEPTH {
        return Err("reply nested too deep".into());
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some((head, next)) = line(buf, at + 1) else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(head).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Integer(number(head)?), next))),
        b'$' => {
            let len = number(head)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            if len > MAX_LEN {
                return Err(format!("bulk string of {len} bytes refused"));
            }
            let len = usize::try_from(len).map_err(|e| e.to_string())?;
            let end = next + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err("bulk string not ended by CRLF".into());
            }
            Ok(Some((Reply::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            if n > MAX_LEN {
                return Err(format!("array of {n} elements refused"));
            }
            let mut items = Vec::new();
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        other => Err(format!("unknown reply type byte {other:#04x}")),
    }
}

/// One connection to a Redis server.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| format!("writing to redis: {e}"))?;
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                self.buf.drain(..used);
                if let Reply::Error(e) = reply {
                    return Err(format!("redis answered: {e}"));
                }
                return Ok(reply);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading from redis: {e}"))?;
            if n == 0 {
                return Err("redis closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// What a Redis sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Keys removed.
    pub removed: u64,
    /// `SCAN` calls made.
    pub scans: u64,
}

/// Removes every key of `target` matching `pattern`, `batch` keys per `SCAN`/`UNLINK`, within
/// `timeout` in all.
///
/// # Errors
/// The server cannot be reached, refuses a command, or the sweep takes longer than `timeout`.
pub async fn sweep_redis(
    target: &RedisTarget,
    pattern: &str,
    batch: u32,
    timeout: Duration,
) -> Result<SweepOutcome, String> {
    tokio::time::timeout(timeout, sweep(target, pattern, batch))
        .await
        .map_err(|_| {
            format!(
                "sweep of {pattern:?} on {} took longer than {timeout:?}",
                target.host_port
            )
        })?
}

async fn sweep(target: &RedisTarget, pattern: &str, batch: u32) -> Result<SweepOutcome, String> {
    let stream = TcpStream::connect(&target.host_port)
        .await
        .map_err(|e| format!("cannot connect to redis at {}: {e}", target.host_port))?;
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    if let Some(p) = &target.password {
        conn.call(&[b"AUTH", p.as_bytes()]).await?;
    }
    if target.db != 0 {
        conn.call(&[b"SELECT", target.db.to_string().as_bytes()])
            .await?;
    }
    let count = batch.max(1).to_string();
    let mut cursor = b"0".to_vec();
    let mut out = SweepOutcome {
        removed: 0,
        scans: 0,
    };
    loop {
        let reply = conn
            .call(&[
                b"SCAN",
                &cursor,
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                count.as_bytes(),
            ])
            .await?;
        out.scans += 1;
        let Reply::Array(Some(parts)) = reply else {
            return Err(format!("unexpected SCAN reply {reply:?}"));
        };
        let [Reply::Bulk(Some(next)), Reply::Array(Some(keys))] = parts.as_slice() else {
            return Err(format!("unexpected SCAN reply {parts:?}"));
        };
        let keys: Vec<&[u8]> = keys
            .iter()
            .filter_map(|k| match k {
                Reply::Bulk(Some(k)) => Some(k.as_slice()),
                _ => None,
            })
            .collect();
        if !keys.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"UNLINK"];
            args.extend(keys.iter().copied());
            if let Reply::Integer(n) = conn.call(&args).await? {
                out.removed += u64::try_from(n).unwrap_or(0);
            }
        }
        if next.as_slice() == b"0" {
            return Ok(out);
        }
        cursor = next.clone();
    }
}

/// Sends `PURGE url`; 2xx or 404 (nothing was cached) is done. Returns the status.
///
/// # Errors
/// No answer, or another status.
pub async fn purge(url: &str, timeout: Duration) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let method = reqwest::Method::from_bytes(b"PURGE").map_err(|e| e.to_string())?;
    let answer = client
        .request(method, url)
        .send()
        .await
        .map_err(|e| format!("PURGE {url}: {e}"))?;
    let status = answer.status().as_u16();
    if (200..300).contains(&status) || status == 404 {
        Ok(status)
    } else {
        Err(format!("PURGE {url}: status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replies_parse_whole_partial_or_as_an_error() {
        assert_eq!(
            parse_reply(b"*2\r\n$1\r\n0\r\n*1\r\n$3\r\nabc\r\n").unwrap(),
            Some((
                Reply::Array(Some(vec![
                    Reply::Bulk(Some(b"0".to_vec())),
                    Reply::Array(Some(vec![Reply::Bulk(Some(b"abc".to_vec()))]))
                ])),
                24
            ))
        );
        assert_eq!(parse_reply(b"$3\r\nab").unwrap(), None);
        assert_eq!(
            parse_reply(b":12\r\n").unwrap(),
            Some((Reply::Integer(12), 5))
        );
        assert_eq!(
            parse_reply(b"$-1\r\n").unwrap(),
            Some((Reply::Bulk(None), 5))
        );
        assert!(parse_reply(b"?x\r\n").is_err());
        assert!(parse_reply(b":x\r\n").is_err());
        assert!(parse_reply(b"$3\r\nabcd\r\n").is_err());
    }

    #[test]
    fn targets_parse_with_password_and_database() {
        assert_eq!(
            RedisTarget::parse("redis://:s3cret@cache:6380/2").unwrap(),
            RedisTarget {
                host_port: "cache:6380".into(),
                password: Some("s3cret".into()),
                db: 2
            }
        );
        assert_eq!(RedisTarget::parse("127.0.0.1:6379").unwrap().db, 0);
        assert!(RedisTarget::parse("redis://cache").is_err());
        assert!(RedisTarget::parse("redis://cache:6379/x").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_reply_an_error_or_more_to_read(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_reply(&bytes);
        }

        #[test]
        fn nested_arrays_and_bulks_roundtrip(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..10)) {
            let mut wire = format!("*{}\r\n", keys.len()).into_bytes();
            for k in &keys {
                wire.extend_from_slice(format!("${}\r\n", k.len()).as_bytes());
                wire.extend_from_slice(k);
                wire.extend_from_slice(b"\r\n");
            }
            let (reply, used) = parse_reply(&wire).unwrap().unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(reply, Reply::Array(Some(keys.into_iter().map(|k| Reply::Bulk(Some(k))).collect())));
        }
    }

    #[tokio::test]
    async fn a_sweep_removes_only_matching_keys_in_batches_from_a_real_redis() {
        let server = backstop_testkit::servers::redis().await;
        let target = RedisTarget::parse(&format!("redis://127.0.0.1:{}/3", server.port)).unwrap();
        let stream = TcpStream::connect(&target.host_port).await.unwrap();
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
        };
        conn.call(&[b"SELECT", b"3"]).await.unwrap();
        for i in 0..1500 {
            let key = format!("product:{i}");
            conn.call(&[b"SET", key.as_bytes(), b"stale"])
                .await
                .unwrap();
        }
        conn.call(&[b"SET", b"session:1", b"keep"]).await.unwrap();
        let out = sweep_redis(&target, "product:*", 200, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(out.removed, 1500);
        assert!(out.scans > 1, "batched: {out:?}");
        assert_eq!(conn.call(&[b"DBSIZE"]).await.unwrap(), Reply::Integer(1));
        // Idempotent: nothing left to remove.
        let again = sweep_redis(&target, "product:*", 200, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(again.removed, 0);
        let closed = RedisTarget::parse(&format!(
            "127.0.0.1:{}",
            crate::process::free_port().unwrap()
        ))
        .unwrap();
        let err = sweep_redis(&closed, "x*", 10, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains("cannot connect to redis"), "{err}");
    }
}
