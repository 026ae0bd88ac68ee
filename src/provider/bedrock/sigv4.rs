//! AWS Signature Version 4, as Bedrock (and every non-S3 AWS service) expects it.
//!
//! Pure functions over strings and bytes, checked against the public CRT test
//! vectors in `tests/fixtures/protocols/aws_sigv4/`. HMAC-SHA256 and SHA-256
//! come from `ring`.
//!
//! The one subtle rule: the canonical URI is the path *as sent*, URI-encoded
//! once more. A path that already carries `%3A` (a Bedrock model id such as
//! `anthropic.claude-3-haiku-20240307-v1:0`) is signed as `%253A`.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use tollgate::provider::bedrock::sigv4::{amz_date, canonical_uri};
//!
//! assert_eq!(canonical_uri("/model/a.b-v1%3A0/converse"), "/model/a.b-v1%253A0/converse");
//! let t = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
//! assert_eq!(amz_date(t), "20150830T123600Z");
//! ```

use crate::Secret;
use crate::error::Error;
use bytes::Bytes;
use http::HeaderValue;
use ring::{digest, hmac};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The hash of an empty payload.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Headers never signed: they may be changed or added by proxies and clients.
const UNSIGNED: &[&str] = &[
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "expect",
    "connection",
    "transfer-encoding",
];

/// AWS credentials: an access key id, its secret, and a session token for
/// temporary credentials. `Debug` never prints the secret or the token.
#[derive(Clone)]
pub struct AwsCredentials {
    /// The access key id (`AKIA…`, `ASIA…`).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials (`x-amz-security-token`).
    pub session_token: Option<Secret>,
}

impl AwsCredentials {
    /// Long-term credentials.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: Secret) -> Self {
        AwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
        }
    }

    /// Adds a session token (temporary credentials).
    pub fn with_session_token(mut self, token: Secret) -> Self {
        self.session_token = Some(token);
        self
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    crate::util::hex(bytes)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Percent-encodes `text` the SigV4 way: unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`) stay, every other byte becomes `%XX` (upper case);
/// `/` stays when `keep_slash`.
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() + 8);
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(UPPER[usize::from(b >> 4)]));
            out.push(char::from(UPPER[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The canonical URI of a path as it is sent: every segment encoded again
/// (non-S3 services double-encode). An empty path is `/`.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    uri_encode(path, true)
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| char::from(*c).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|c| char::from(*c).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// The canonical query string: each `name=value` decoded then strictly
/// re-encoded, sorted by name then value, joined by `&`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| uri_encode(&String::from_utf8_lossy(&percent_decode(s)), false);
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// A header value as it is signed: trimmed, inner runs of spaces collapsed.
fn canonical_value(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.trim().chars() {
        if c == ' ' || c == '\t' {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
    out
}

/// What is signed about a request.
#[derive(Clone, Debug)]
pub struct CanonicalInput<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path exactly as sent (already percent-encoded where it is).
    pub path: &'a str,
    /// The raw query string without `?` (empty when none).
    pub query: &'a str,
    /// The headers to sign, any case, values as sent. Repeated names are joined with `,`.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// Lowercase hex SHA-256 of the body.
    pub payload_hash: &'a str,
}

/// Builds the canonical request; returns it with the signed-headers list.
pub fn canonical_request(input: &CanonicalInput<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = Vec::with_capacity(input.headers.len());
    for (name, value) in &input.headers {
        let name = name.to_ascii_lowercase();
        let value = canonical_value(value);
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical = String::with_capacity(256);
    canonical.push_str(input.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(input.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(input.query));
    canonical.push('\n');
    for (n, v) in &headers {
        canonical.push_str(n);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let signed = signed.join(";");
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(input.payload_hash);
    (canonical, signed)
}

/// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
pub fn amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The string to sign.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of `string_to_sign` with the key derived for the date, region and service.
pub fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
) -> String {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), service.as_bytes());
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    hex(hmac_sha256(k_signing.as_ref(), string_to_sign.as_bytes()).as_ref())
}

/// The `Authorization` header value for a canonical input.
pub fn authorization(
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
    input: &CanonicalInput<'_>,
) -> String {
    let date_time = amz_date(time);
    let date = &date_time[..8];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let (canonical, signed) = canonical_request(input);
    let sts = string_to_sign(&date_time, &scope, &canonical);
    let sig = signature(
        credentials.secret_access_key.expose(),
        date,
        region,
        service,
        &sts,
    );
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
        credentials.access_key_id
    )
}

/// Signs `req` in place: adds `host` (from the URI) when missing,
/// `x-amz-date`, `x-amz-security-token` for temporary credentials,
/// `x-amz-content-sha256` when `content_sha256` is set, then `Authorization`.
/// Every other header present is signed too, except those proxies may rewrite
/// (`user-agent`, …). Sign last: a header changed afterwards breaks the signature.
pub fn sign_request(
    req: &mut http::Request<Bytes>,
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    time: SystemTime,
    content_sha256: bool,
) -> Result<(), Error> {
    let invalid =
        |what: &str| Error::bad_request(format!("cannot sign the request: invalid {what}"));
    if !req.headers().contains_key(http::header::HOST) {
        let authority = req
            .uri()
            .authority()
            .ok_or_else(|| invalid("URL (no host)"))?
            .as_str()
            .to_owned();
        let host = HeaderValue::from_str(&authority).map_err(|_| invalid("host"))?;
        req.headers_mut().insert(http::header::HOST, host);
    }
    let date = amz_date(time);
    let headers = req.headers_mut();
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&date).map_err(|_| invalid("date"))?,
    );
    headers.remove("x-amz-security-token");
    if let Some(token) = &credentials.session_token {
        let mut v = HeaderValue::from_str(token.expose()).map_err(|_| invalid("session token"))?;
        v.set_sensitive(true);
        headers.insert("x-amz-security-token", v);
    }
    let payload_hash = sha256_hex(req.body());
    if content_sha256 {
        req.headers_mut().insert(
            "x-amz-content-sha256",
            HeaderValue::from_str(&payload_hash).map_err(|_| invalid("hash"))?,
        );
    }
    if credentials.access_key_id.is_empty()
        || !credentials
            .access_key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
    {
        return Err(invalid("AWS access key id"));
    }
    let value = {
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        let method = req.method().as_str();
        let headers: Vec<(&str, &[u8])> = req
            .headers()
            .iter()
            .filter(|(n, _)| !UNSIGNED.contains(&n.as_str()))
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let input = CanonicalInput {
            method,
            path,
            query,
            headers,
            payload_hash: &payload_hash,
        };
        authorization(credentials, region, service, time, &input)
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| invalid("region"))?;
    value.set_sensitive(true);
    req.headers_mut().insert(http::header::AUTHORIZATION, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn dir(case: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/protocols/aws_sigv4")
            .join(case)
    }

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(dir(case).join(file)).unwrap()
    }

    /// Parses a vector's `request.txt`: method, path, query, headers, body.
    fn parse_request(text: &str) -> (String, String, String, Vec<(String, String)>, String) {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let first = lines.next().unwrap();
        let first = first.strip_suffix(" HTTP/1.1").unwrap_or(first);
        let (method, target) = first.split_once(' ').unwrap();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        (
            method.to_owned(),
            path.to_owned(),
            query.to_owned(),
            headers,
            body.to_owned(),
        )
    }

    fn check_vector(
        case: &str,
        region: &str,
        service: &str,
        time: SystemTime,
        token: Option<&str>,
        sign_body: bool,
    ) {
        let (method, path, query, mut headers, body) = parse_request(&read(case, "request.txt"));
        let date = amz_date(time);
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"))
        {
            headers.push(("X-Amz-Date".into(), date.clone()));
        }
        if let Some(t) = token {
            headers.push(("X-Amz-Security-Token".into(), t.to_owned()));
        }
        let payload_hash = sha256_hex(body.as_bytes());
        if sign_body {
            headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        }
        let input = CanonicalInput {
            method: &method,
            path: &path,
            query: &query,
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect(),
            payload_hash: &payload_hash,
        };
        let (canonical, _) = canonical_request(&input);
        assert_eq!(
            canonical,
            read(case, "header-canonical-request.txt").trim_end_matches('\n'),
            "{case}"
        );
        let scope = format!("{}/{region}/{service}/aws4_request", &date[..8]);
        let sts = string_to_sign(&date, &scope, &canonical);
        assert_eq!(
            sts,
            read(case, "header-string-to-sign.txt").trim_end_matches('\n'),
            "{case}"
        );
        let mut creds = AwsCredentials::new(AKID, Secret::new(SECRET));
        if let Some(t) = token {
            creds = creds.with_session_token(Secret::new(t));
        }
        let auth = authorization(&creds, region, service, time, &input);
        let signed = read(case, "header-signed-request.txt");
        let expected = signed
            .lines()
            .find_map(|l| l.strip_prefix("Authorization:"))
            .unwrap()
            .trim();
        assert_eq!(auth, expected, "{case}");
        if let Ok(sig) = std::fs::read_to_string(dir(case).join("header-signature.txt")) {
            assert!(
                auth.ends_with(&format!("Signature={}", sig.trim())),
                "{case}"
            );
        }
    }

    fn crt_time() -> SystemTime {
        // 2015-08-30T12:36:00Z
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    #[test]
    fn crt_vectors() {
        for case in [
            "get-vanilla",
            "get-header-value-trim",
            "get-space-unnormalized",
            "get-utf8",
            "get-vanilla-query-order-key-case",
            "post-header-key-sort",
            "post-vanilla",
        ] {
            check_vector(case, "us-east-1", "service", crt_time(), None, false);
        }
        check_vector(
            "get-vanilla-with-session-token",
            "us-east-1",
            "service",
            crt_time(),
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
            false,
        );
        check_vector(
            "post-x-www-form-urlencoded",
            "us-east-1",
            "service",
            crt_time(),
            None,
            true,
        );
    }

    #[test]
    fn vector_contexts_match_the_constants() {
        for case in ["get-vanilla", "post-vanilla", "post-x-www-form-urlencoded"] {
            let ctx: serde_json::Value = serde_json::from_str(&read(case, "context.json")).unwrap();
            assert_eq!(ctx["credentials"]["access_key_id"], AKID);
            assert_eq!(ctx["credentials"]["secret_access_key"], SECRET);
            assert_eq!(ctx["timestamp"], "2015-08-30T12:36:00Z");
            assert_eq!(amz_date(crt_time()), "20150830T123600Z");
        }
    }

    #[test]
    fn double_url_encode_vector() {
        // 2021-05-11T15:40:45Z, region us-east-2, service lambda (see README.txt).
        let t = UNIX_EPOCH + Duration::from_secs(1_620_747_645);
        assert_eq!(amz_date(t), "20210511T154045Z");
        check_vector("double-url-encode", "us-east-2", "lambda", t, None, false);
    }

    #[test]
    fn bedrock_mantle_vector_with_session_token_and_content_hash() {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir("openai-bedrock-mantle-sigv4.json")).unwrap(),
        )
        .unwrap();
        // 2025-01-02T03:04:05Z
        let t = UNIX_EPOCH + Duration::from_secs(1_735_787_045);
        assert_eq!(amz_date(t), v["expected"]["date"]);
        let creds = AwsCredentials::new(
            v["credentials"]["accessKeyId"].as_str().unwrap(),
            Secret::new(v["credentials"]["secretAccessKey"].as_str().unwrap()),
        )
        .with_session_token(Secret::new(
            v["credentials"]["sessionToken"].as_str().unwrap(),
        ));
        let body = v["request"]["body"].as_str().unwrap().to_owned();
        let mut req = http::Request::post(v["request"]["url"].as_str().unwrap())
            .header(
                "content-type",
                v["request"]["contentType"].as_str().unwrap(),
            )
            .body(Bytes::from(body.clone()))
            .unwrap();
        assert_eq!(sha256_hex(body.as_bytes()), v["expected"]["payloadHash"]);
        sign_request(&mut req, &creds, "us-east-1", "bedrock-mantle", t, true).unwrap();
        assert_eq!(
            req.headers()["authorization"],
            v["expected"]["authorization"].as_str().unwrap()
        );
        assert_eq!(
            req.headers()["x-amz-security-token"],
            "fixture-session-token"
        );
        assert!(req.headers()["authorization"].is_sensitive());
        let input_headers: Vec<(&str, &[u8])> = req
            .headers()
            .iter()
            .filter(|(n, _)| *n != "authorization")
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let (canonical, _) = canonical_request(&CanonicalInput {
            method: "POST",
            path: req.uri().path(),
            query: "",
            headers: input_headers,
            payload_hash: v["expected"]["payloadHash"].as_str().unwrap(),
        });
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            v["expected"]["canonicalRequestHash"]
        );
    }

    #[test]
    fn worked_bedrock_example() {
        // PROTOCOLS.md §10: not an AWS vector, but computed by code that reproduces them.
        let t = UNIX_EPOCH + Duration::from_secs(1_735_787_045);
        let body = r#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":16}}"#;
        assert_eq!(
            sha256_hex(body.as_bytes()),
            "57a20cc31f585190fb22055297edf1b864f633a710fe65001d7e6737b9410c17"
        );
        let mut req = http::Request::post(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        )
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap();
        let creds = AwsCredentials::new(AKID, Secret::new(SECRET));
        sign_request(&mut req, &creds, "us-east-1", "bedrock", t, false).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250102/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=8c8b78f11e948b884c108660aecc3ebc0631835f39da505e6a8771aa6eb1bbdb"
        );
        assert!(req.headers().get("x-amz-security-token").is_none());
        let (canonical, _) = canonical_request(&CanonicalInput {
            method: "POST",
            path: req.uri().path(),
            query: "",
            headers: vec![
                ("content-type", b"application/json"),
                ("host", b"bedrock-runtime.us-east-1.amazonaws.com"),
                ("x-amz-date", b"20250102T030405Z"),
            ],
            payload_hash: "57a20cc31f585190fb22055297edf1b864f633a710fe65001d7e6737b9410c17",
        });
        assert!(canonical.contains("/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"));
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "017751948130ddd753d9f4f501e88c553a6fe60ef0545e2e1a4cea0110b00819"
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        // 2000-02-29T23:59:59Z (leap day)
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(951_868_799)),
            "20000229T235959Z"
        );
        assert_eq!(uri_encode("a b/c~d:é", false), "a%20b%2Fc~d%3A%C3%A9");
        assert_eq!(canonical_query("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
        assert_eq!(canonical_value(b"  a   b \t c  "), "a b c");
        let creds = AwsCredentials::new(AKID, Secret::new(SECRET))
            .with_session_token(Secret::new("tok-123456"));
        let dbg = format!("{creds:?}");
        assert!(
            !dbg.contains(SECRET) && !dbg.contains("tok-123456") && !dbg.contains(AKID),
            "{dbg}"
        );
    }
}
