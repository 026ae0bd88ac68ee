//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`).
//!
//! ```text
//! u32 total_length | u32 headers_length | u32 prelude_crc | headers | payload | u32 message_crc
//! ```
//!
//! All integers are big-endian; both CRCs are CRC-32 (IEEE). The decoder is
//! incremental (frames may straddle reads), checks the prelude CRC before it
//! trusts a length, bounds the frame size, checks the message CRC of every
//! frame, and never panics on any input.
//!
//! ```
//! use tollgate::provider::bedrock::eventstream::{EventStreamDecoder, Message};
//!
//! let frame = Message::event("messageStop", br#"{"stopReason":"end_turn"}"#).encode();
//! let mut dec = EventStreamDecoder::new();
//! dec.push(&frame[..5]);
//! assert!(dec.next_message().unwrap().is_none());
//! dec.push(&frame[5..]);
//! let msg = dec.next_message().unwrap().unwrap();
//! assert_eq!(msg.header_str(":event-type"), Some("messageStop"));
//! assert_eq!(&msg.payload[..], br#"{"stopReason":"end_turn"}"#);
//! ```

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// Largest frame accepted (AWS's own limit is 16 MiB).
pub const MAX_FRAME_BYTES: u32 = 16 << 20;
/// Largest header block accepted (AWS's limit).
pub const MAX_HEADERS_BYTES: u32 = 128 << 10;
const PRELUDE: usize = 12;
const OVERHEAD: u32 = 16;

/// A header value, one variant per wire type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6.
    Bytes(Bytes),
    /// Type 7 (UTF-8).
    String(String),
    /// Type 8: milliseconds since the epoch.
    Timestamp(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The wire type code.
    pub fn type_code(&self) -> u8 {
        match self {
            HeaderValue::Bool(true) => 0,
            HeaderValue::Bool(false) => 1,
            HeaderValue::Byte(_) => 2,
            HeaderValue::Short(_) => 3,
            HeaderValue::Int(_) => 4,
            HeaderValue::Long(_) => 5,
            HeaderValue::Bytes(_) => 6,
            HeaderValue::String(_) => 7,
            HeaderValue::Timestamp(_) => 8,
            HeaderValue::Uuid(_) => 9,
        }
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<(String, HeaderValue)>,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value of string header `name`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        match self.header(name)? {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An event frame as Bedrock sends it (`:event-type`, `:content-type`, `:message-type: event`).
    pub fn event(event_type: &str, payload: &[u8]) -> Message {
        Message {
            headers: vec![
                (":event-type".into(), HeaderValue::String(event_type.into())),
                (
                    ":content-type".into(),
                    HeaderValue::String("application/json".into()),
                ),
                (":message-type".into(), HeaderValue::String("event".into())),
            ],
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// An exception frame (`:exception-type`, `:message-type: exception`).
    pub fn exception(exception_type: &str, payload: &[u8]) -> Message {
        Message {
            headers: vec![
                (
                    ":exception-type".into(),
                    HeaderValue::String(exception_type.into()),
                ),
                (
                    ":content-type".into(),
                    HeaderValue::String("application/json".into()),
                ),
                (
                    ":message-type".into(),
                    HeaderValue::String("exception".into()),
                ),
            ],
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Encodes the frame (for tests and mock servers). Header names longer than
    /// 255 bytes and values longer than 65,535 bytes are cut to fit.
    pub fn encode(&self) -> Vec<u8> {
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let name = &name.as_bytes()[..name.len().min(255)];
            headers.push(name.len() as u8);
            headers.extend_from_slice(name);
            headers.push(value.type_code());
            match value {
                HeaderValue::Bool(_) => {}
                HeaderValue::Byte(v) => headers.extend_from_slice(&v.to_be_bytes()),
                HeaderValue::Short(v) => headers.extend_from_slice(&v.to_be_bytes()),
                HeaderValue::Int(v) => headers.extend_from_slice(&v.to_be_bytes()),
                HeaderValue::Long(v) | HeaderValue::Timestamp(v) => {
                    headers.extend_from_slice(&v.to_be_bytes())
                }
                HeaderValue::Bytes(b) => {
                    let b = &b[..b.len().min(usize::from(u16::MAX))];
                    headers.extend_from_slice(&(b.len() as u16).to_be_bytes());
                    headers.extend_from_slice(b);
                }
                HeaderValue::String(s) => {
                    let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
                    headers.extend_from_slice(&(b.len() as u16).to_be_bytes());
                    headers.extend_from_slice(b);
                }
                HeaderValue::Uuid(u) => headers.extend_from_slice(u),
            }
        }
        let total = (headers.len() + self.payload.len() + OVERHEAD as usize) as u32;
        let mut out = Vec::with_capacity(total as usize);
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32fast::hash(&out);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&self.payload);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }
}

/// The part of a header that did not fit in the header block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderPart {
    /// The name's length byte.
    NameLength,
    /// The name.
    Name,
    /// The value-type byte.
    ValueType,
    /// The 2-byte length of a bytes/string value.
    ValueLength,
    /// The value.
    Value,
}

/// Why bytes are not a valid event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The prelude CRC does not match.
    PreludeChecksum {
        /// The CRC in the frame.
        expected: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The message CRC does not match.
    MessageChecksum {
        /// The CRC in the frame.
        expected: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// `total_length` is below the 16-byte minimum.
    FrameTooShort(u32),
    /// `total_length` is above [`MAX_FRAME_BYTES`].
    FrameTooLarge(u32),
    /// `headers_length` does not fit in the frame, or is above [`MAX_HEADERS_BYTES`].
    HeadersLength {
        /// The headers length.
        headers: u32,
        /// The total length.
        total: u32,
    },
    /// A header runs past the end of the header block.
    HeaderTruncated(HeaderPart),
    /// A header value type outside 0..=9.
    InvalidHeaderType(u8),
    /// A header name that is empty or not UTF-8.
    InvalidHeaderName,
    /// A string header value that is not UTF-8.
    InvalidHeaderString,
    /// The stream ended in the middle of a frame.
    Truncated {
        /// Bytes of the unfinished frame.
        buffered: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::PreludeChecksum { expected, computed } => write!(
                f,
                "event-stream prelude checksum mismatch (frame {expected:08x}, computed {computed:08x})"
            ),
            FrameError::MessageChecksum { expected, computed } => write!(
                f,
                "event-stream message checksum mismatch (frame {expected:08x}, computed {computed:08x})"
            ),
            FrameError::FrameTooShort(n) => write!(f, "event-stream frame length {n} is below 16"),
            FrameError::FrameTooLarge(n) => {
                write!(
                    f,
                    "event-stream frame length {n} is above {MAX_FRAME_BYTES}"
                )
            }
            FrameError::HeadersLength { headers, total } => write!(
                f,
                "event-stream headers length {headers} does not fit a frame of {total} bytes"
            ),
            FrameError::HeaderTruncated(part) => {
                write!(f, "event-stream header {part:?} runs past the header block")
            }
            FrameError::InvalidHeaderType(t) => {
                write!(f, "event-stream header type {t} is unknown")
            }
            FrameError::InvalidHeaderName => {
                f.write_str("event-stream header name is empty or not UTF-8")
            }
            FrameError::InvalidHeaderString => {
                f.write_str("event-stream string header is not UTF-8")
            }
            FrameError::Truncated { buffered } => write!(
                f,
                "the event stream ended in the middle of a frame ({buffered} bytes pending)"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_be_bytes(a)
}

/// Reads `n` bytes from `block` at `*pos`, or reports which part was cut.
fn take<'a>(
    block: &'a [u8],
    pos: &mut usize,
    n: usize,
    part: HeaderPart,
) -> Result<&'a [u8], FrameError> {
    let end = pos
        .checked_add(n)
        .ok_or(FrameError::HeaderTruncated(part))?;
    let s = block
        .get(*pos..end)
        .ok_or(FrameError::HeaderTruncated(part))?;
    *pos = end;
    Ok(s)
}

fn fixed_part<const N: usize>(
    block: &[u8],
    pos: &mut usize,
    part: HeaderPart,
) -> Result<[u8; N], FrameError> {
    let s = take(block, pos, N, part)?;
    <[u8; N]>::try_from(s).map_err(|_| FrameError::HeaderTruncated(part))
}

fn fixed<const N: usize>(block: &[u8], pos: &mut usize) -> Result<[u8; N], FrameError> {
    fixed_part::<N>(block, pos, HeaderPart::Value)
}

/// Parses a header block.
pub fn parse_headers(block: &[u8]) -> Result<Vec<(String, HeaderValue)>, FrameError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let [len] = fixed_part::<1>(block, &mut pos, HeaderPart::NameLength)?;
        let name = take(block, &mut pos, usize::from(len), HeaderPart::Name)?;
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|n| !n.is_empty())
            .ok_or(FrameError::InvalidHeaderName)?
            .to_owned();
        let [ty] = fixed_part::<1>(block, &mut pos, HeaderPart::ValueType)?;
        let value = match ty {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(fixed::<1>(block, &mut pos)?)),
            3 => HeaderValue::Short(i16::from_be_bytes(fixed::<2>(block, &mut pos)?)),
            4 => HeaderValue::Int(i32::from_be_bytes(fixed::<4>(block, &mut pos)?)),
            5 => HeaderValue::Long(i64::from_be_bytes(fixed::<8>(block, &mut pos)?)),
            6 | 7 => {
                let l = fixed_part::<2>(block, &mut pos, HeaderPart::ValueLength)?;
                let l = usize::from(u16::from_be_bytes(l));
                let v = take(block, &mut pos, l, HeaderPart::Value)?;
                if ty == 6 {
                    HeaderValue::Bytes(Bytes::copy_from_slice(v))
                } else {
                    HeaderValue::String(
                        std::str::from_utf8(v)
                            .map_err(|_| FrameError::InvalidHeaderString)?
                            .to_owned(),
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(fixed::<8>(block, &mut pos)?)),
            9 => HeaderValue::Uuid(fixed::<16>(block, &mut pos)?),
            other => return Err(FrameError::InvalidHeaderType(other)),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Checks a prelude; returns `(total_length, headers_length)`.
fn check_prelude(prelude: &[u8], max_frame: u32) -> Result<(u32, u32), FrameError> {
    let field = |i: usize| be_u32(prelude.get(i..i + 4).unwrap_or_default());
    let total = field(0);
    let headers = field(4);
    let expected = field(8);
    let computed = crc32fast::hash(prelude.get(..8).unwrap_or_default());
    if expected != computed {
        return Err(FrameError::PreludeChecksum { expected, computed });
    }
    if total < OVERHEAD {
        return Err(FrameError::FrameTooShort(total));
    }
    if total > max_frame {
        return Err(FrameError::FrameTooLarge(total));
    }
    if headers > total - OVERHEAD || headers > MAX_HEADERS_BYTES {
        return Err(FrameError::HeadersLength { headers, total });
    }
    Ok((total, headers))
}

/// Decodes one whole frame from the start of `bytes`; returns it and the bytes
/// it used. `Ok(None)` when more bytes are needed.
pub fn decode_frame(bytes: &[u8], max_frame: u32) -> Result<Option<(Message, usize)>, FrameError> {
    let Some(prelude) = bytes.get(..PRELUDE) else {
        return Ok(None);
    };
    let (total, headers_len) = check_prelude(prelude, max_frame)?;
    let total = total as usize;
    let Some(frame) = bytes.get(..total) else {
        return Ok(None);
    };
    let headers_end = PRELUDE + headers_len as usize;
    let block = frame.get(PRELUDE..headers_end).unwrap_or_default();
    let headers = parse_headers(block)?;
    let body_end = total - 4;
    let expected = be_u32(frame.get(body_end..).unwrap_or_default());
    let computed = crc32fast::hash(frame.get(..body_end).unwrap_or_default());
    if expected != computed {
        return Err(FrameError::MessageChecksum { expected, computed });
    }
    let payload = Bytes::copy_from_slice(frame.get(headers_end..body_end).unwrap_or_default());
    Ok(Some((Message { headers, payload }, total)))
}

/// An incremental decoder: push bytes as they arrive, pull whole messages.
/// After an error it stays failed (the stream cannot be resynchronised).
#[derive(Debug)]
pub struct EventStreamDecoder {
    buf: BytesMut,
    max_frame: u32,
    failed: Option<FrameError>,
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventStreamDecoder {
    /// A decoder with the default frame limit ([`MAX_FRAME_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_frame(MAX_FRAME_BYTES)
    }

    /// A decoder refusing frames longer than `max_frame` bytes.
    pub fn with_max_frame(max_frame: u32) -> Self {
        EventStreamDecoder {
            buf: BytesMut::new(),
            max_frame,
            failed: None,
        }
    }

    /// Adds bytes read from the body.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match decode_frame(&self.buf, self.max_frame) {
            Ok(Some((msg, used))) => {
                self.buf.advance(used);
                Ok(Some(msg))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.buf.clear();
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The body ended: an error if a frame was left unfinished.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }

    /// Bytes buffered and not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vector(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/protocols/aws_eventstream/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
        let mut d = EventStreamDecoder::new();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(m) = d.next_message()? {
            out.push(m);
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn valid_no_headers() {
        let b = vector("valid_no_headers");
        assert_eq!(b.len(), 36);
        assert_eq!(be_u32(&b[8..12]), 0x5163_56ad);
        assert_eq!(be_u32(&b[32..36]), 0x8df8_0e65);
        let msgs = decode_all(&b).unwrap();
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].headers.is_empty());
        assert_eq!(&msgs[0].payload[..], b"another test payload");
    }

    #[test]
    fn valid_empty_payload() {
        let msgs = decode_all(&vector("valid_empty_payload")).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            msgs[0].headers,
            vec![("some-header".to_owned(), HeaderValue::Short(500))]
        );
        assert!(msgs[0].payload.is_empty());
    }

    #[test]
    fn valid_with_all_headers_and_payload() {
        let b = vector("valid_with_all_headers_and_payload");
        let msgs = decode_all(&b).unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        let expected = vec![
            ("true".to_owned(), HeaderValue::Bool(true)),
            ("false".to_owned(), HeaderValue::Bool(false)),
            ("byte".to_owned(), HeaderValue::Byte(50)),
            ("short".to_owned(), HeaderValue::Short(20000)),
            ("int".to_owned(), HeaderValue::Int(500000)),
            ("long".to_owned(), HeaderValue::Long(50_000_000_000)),
            (
                "bytes".to_owned(),
                HeaderValue::Bytes(Bytes::from_static(b"some bytes")),
            ),
            ("str".to_owned(), HeaderValue::String("some str".into())),
            ("time".to_owned(), HeaderValue::Timestamp(5_000_000_000)),
            (
                "uuid".to_owned(),
                HeaderValue::Uuid([
                    0xb7, 0x9b, 0xc9, 0x14, 0xde, 0x21, 0x4e, 0x13, 0xb8, 0xb2, 0xbc, 0x47, 0xe8,
                    0x5b, 0x7f, 0x0b,
                ]),
            ),
        ];
        assert_eq!(m.headers, expected);
        assert_eq!(&m.payload[..], b"some payload");
        // Our encoder writes the same bytes back.
        assert_eq!(m.encode(), b);
    }

    #[test]
    fn real_exception_frame() {
        let msgs = decode_all(&vector("real_exception_frame_transcribe")).unwrap();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.header_str(":exception-type"), Some("BadRequestException"));
        assert_eq!(m.header_str(":content-type"), Some("application/json"));
        assert_eq!(m.header_str(":message-type"), Some("exception"));
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            v["Message"],
            "A complete signal was sent without the preceding empty frame."
        );
    }

    #[test]
    fn invalid_vectors_give_their_specific_errors() {
        let cases: [(&str, FrameError); 8] = [
            (
                "invalid_prelude_checksum",
                FrameError::PreludeChecksum {
                    expected: 0xdead_beef,
                    computed: 0x8bb4_95fb,
                },
            ),
            (
                "invalid_message_checksum",
                FrameError::MessageChecksum {
                    expected: 0xdead_beef,
                    computed: 0x01a0_5860,
                },
            ),
            (
                "invalid_headers_length",
                FrameError::HeadersLength {
                    headers: 77,
                    total: 89,
                },
            ),
            (
                "invalid_header_value_type",
                FrameError::InvalidHeaderType(0x60),
            ),
            (
                "invalid_header_name_length",
                FrameError::HeaderTruncated(HeaderPart::Name),
            ),
            (
                "invalid_header_name_length_too_long",
                FrameError::HeaderTruncated(HeaderPart::Name),
            ),
            (
                "invalid_header_string_length_cut_off",
                FrameError::HeaderTruncated(HeaderPart::ValueLength),
            ),
            (
                "invalid_header_string_value_length",
                FrameError::HeaderTruncated(HeaderPart::Value),
            ),
        ];
        for (name, expected) in cases {
            let got = decode_all(&vector(name)).unwrap_err();
            assert_eq!(got, expected, "{name}");
            assert!(!got.to_string().is_empty());
        }
    }

    #[test]
    fn limits_and_truncation() {
        let frame = Message::event("x", b"{}").encode();
        let mut d = EventStreamDecoder::with_max_frame(20);
        d.push(&frame);
        assert!(matches!(
            d.next_message(),
            Err(FrameError::FrameTooLarge(_))
        ));
        // Stays failed.
        d.push(&frame);
        assert!(d.next_message().is_err());
        let mut d = EventStreamDecoder::new();
        d.push(&frame[..frame.len() - 1]);
        assert!(d.next_message().unwrap().is_none());
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                buffered: frame.len() - 1
            })
        );
        // A prelude announcing less than 16 bytes.
        let mut short = 8u32.to_be_bytes().to_vec();
        short.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&short);
        short.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(
            decode_all(&short).unwrap_err(),
            FrameError::FrameTooShort(8)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_frames(idx in any::<proptest::sample::Index>(), val in any::<u8>()) {
            let mut b = vector("valid_with_all_headers_and_payload");
            let i = idx.index(b.len());
            b[i] = val;
            let _ = decode_all(&b);
        }

        #[test]
        fn any_split_decodes_the_same(cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6)) {
            let mut all = vector("valid_with_all_headers_and_payload");
            all.extend(vector("valid_no_headers"));
            all.extend(vector("valid_empty_payload"));
            let whole = decode_all(&all).unwrap();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(all.len())).collect();
            points.sort_unstable();
            let mut d = EventStreamDecoder::new();
            let mut got = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain([all.len()]) {
                d.push(&all[last..p]);
                last = p;
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            d.finish().unwrap();
            prop_assert_eq!(got, whole);
        }
    }
}
