//! One HTTP download of a list: a conditional GET with timeouts, the body streamed to a
//! file through a byte limit and hashed on the way.
//!
//! It owns the transfer only: it does not unpack, parse or keep anything (the caller
//! decides whether the bytes become the last good copy).

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::FetchError;
use crate::config::UrlSource;

/// The validators of the copy in hand, sent so an unchanged list costs a 304.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    /// `ETag` → `If-None-Match`.
    pub etag: Option<String>,
    /// `Last-Modified` → `If-Modified-Since`.
    pub last_modified: Option<String>,
}

/// What a download brought.
#[derive(Debug)]
pub enum Got {
    /// 304: the copy in hand is current.
    NotModified,
    /// A new body, written to the file given.
    Body {
        /// SHA-256 of the bytes as served.
        sha256: [u8; 32],
        /// The response's validators.
        validators: Validators,
    },
}

/// GET `src.url` into `into` (created or truncated).
pub async fn download(src: &UrlSource, have: &Validators, into: &Path) -> Result<Got, FetchError> {
    let client = reqwest::Client::builder()
        .connect_timeout(src.connect_timeout)
        .timeout(src.timeout)
        .user_agent(concat!("chaperone/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Network(e.to_string()))?;
    let mut req = client.get(&src.url);
    if let Some(etag) = &have.etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = &have.last_modified {
        req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
    }
    let mut resp = req.send().await.map_err(classify)?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Got::NotModified);
    }
    if !status.is_success() {
        return Err(FetchError::Http(status.as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > src.max_bytes) {
        return Err(FetchError::TooLarge(src.max_bytes));
    }
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .filter(|v| v.len() <= 256)
            .map(str::to_owned)
    };
    let validators = Validators {
        etag: header(reqwest::header::ETAG),
        last_modified: header(reqwest::header::LAST_MODIFIED),
    };
    let mut file = tokio::fs::File::create(into)
        .await
        .map_err(FetchError::Io)?;
    let mut hash = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        total += chunk.len() as u64;
        if total > src.max_bytes {
            return Err(FetchError::TooLarge(src.max_bytes));
        }
        hash.update(&chunk);
        file.write_all(&chunk).await.map_err(FetchError::Io)?;
    }
    file.flush().await.map_err(FetchError::Io)?;
    file.sync_all().await.map_err(FetchError::Io)?;
    Ok(Got::Body {
        sha256: hash.finalize().into(),
        validators,
    })
}

/// Sort a transfer error into the refresh result it is counted as.
fn classify(e: reqwest::Error) -> FetchError {
    let text = error_chain(&e);
    if e.is_timeout() {
        FetchError::Timeout(text)
    } else if e.is_connect() {
        FetchError::Unreachable(text)
    } else if e.is_body() || e.is_decode() {
        FetchError::Truncated(text)
    } else {
        FetchError::Network(text)
    }
}

/// The error and its causes in words ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
