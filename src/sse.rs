//! Server-sent events: an incremental decoder and the encoder the edge writes with.
//!
//! The decoder follows the WHATWG event-stream rules and the quirks of every
//! provider we talk to: lines end in LF, CRLF or a lone CR (Gemini sends CRLF,
//! and a CR may arrive at the end of one read with its LF in the next);
//! comment lines (`: OPENROUTER PROCESSING`) are skipped; several `data:` lines
//! of one event are joined with `\n`; one space after the colon is dropped; a
//! byte-order mark at the start is ignored. Input is buffered only up to the
//! end of the current line, so a UTF-8 sequence is never split, and one event
//! larger than the configured limit is an error rather than unbounded memory.
//!
//! ```
//! use tollgate::sse::SseDecoder;
//!
//! let mut dec = SseDecoder::new();
//! dec.push(b"event: ping\r\ndata: {\"a\":");
//! assert!(dec.next_event().unwrap().is_none()); // the event is not complete yet
//! dec.push(b"1}\r\n\r\n: comment\n\ndata: [DONE]\n\n");
//! let ev = dec.next_event().unwrap().unwrap();
//! assert_eq!(ev.event.as_deref(), Some("ping"));
//! assert_eq!(ev.data, r#"{"a":1}"#);
//! assert!(dec.next_event().unwrap().unwrap().is_done());
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` name, if one was given.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen.
    pub id: Option<String>,
    /// A `retry:` value in milliseconds.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// Whether this is OpenAI's end marker `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

/// The decoder's only failure: an event larger than the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventTooLarge {
    /// The limit in bytes.
    pub limit: usize,
}

impl fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server-sent event larger than {} bytes", self.limit)
    }
}

impl std::error::Error for EventTooLarge {}

/// The default limit on one event: 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// Incremental SSE decoder. Feed bytes with [`push`](Self::push), take events
/// with [`next_event`](Self::next_event), and call [`finish`](Self::finish) at
/// end of input.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    pos: usize,
    skip_lf: bool,
    bom_checked: bool,
    pending: Pending,
    max_event: usize,
}

#[derive(Debug, Default)]
struct Pending {
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::new()
    }
}

impl SseDecoder {
    /// A decoder with the default event size limit.
    pub fn new() -> Self {
        SseDecoder::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that refuses events larger than `max` bytes.
    pub fn with_max_event_bytes(max: usize) -> Self {
        SseDecoder {
            buf: Vec::new(),
            pos: 0,
            skip_lf: false,
            bom_checked: false,
            pending: Pending::default(),
            max_event: max,
        }
    }

    /// Appends input bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 4096) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the input so far holds one.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, EventTooLarge> {
        loop {
            if self.skip_lf {
                match self.buf.get(self.pos) {
                    None => return Ok(None),
                    Some(b'\n') => self.pos += 1,
                    Some(_) => {}
                }
                self.skip_lf = false;
            }
            if !self.bom_checked {
                let rest = &self.buf[self.pos..];
                if rest.len() < BOM.len() && BOM.starts_with(rest) {
                    return Ok(None);
                }
                if rest.starts_with(BOM) {
                    self.pos += BOM.len();
                }
                self.bom_checked = true;
            }
            let rest = &self.buf[self.pos..];
            let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if rest.len() + self.pending.data.len() > self.max_event {
                    return Err(EventTooLarge {
                        limit: self.max_event,
                    });
                }
                return Ok(None);
            };
            let start = self.pos;
            let end = start + i;
            self.skip_lf = self.buf[end] == b'\r';
            self.pos = end + 1;
            if let Some(ev) = self.pending.line(&self.buf[start..end]) {
                return Ok(Some(ev));
            }
            if self.pending.data.len() > self.max_event {
                return Err(EventTooLarge {
                    limit: self.max_event,
                });
            }
        }
    }

    /// Ends the input: a last line without a terminator is processed, and an
    /// event that has data but no closing blank line is dispatched (providers
    /// that close the connection right after their last event rely on this).
    pub fn finish(&mut self) -> Result<Option<SseEvent>, EventTooLarge> {
        if let Some(ev) = self.next_event()? {
            return Ok(Some(ev));
        }
        if self.pos < self.buf.len() {
            let start = self.pos;
            self.pos = self.buf.len();
            if let Some(ev) = self.pending.line(&self.buf[start..]) {
                return Ok(Some(ev));
            }
        }
        Ok(self.pending.dispatch())
    }

    /// Bytes buffered but not yet decoded into an event.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos + self.pending.data.len()
    }
}

impl Pending {
    fn line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned())
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if !self.has_data {
            // Per the spec an event without data is not dispatched; its name is reset.
            self.event = None;
            return None;
        }
        let data = match String::from_utf8(std::mem::take(&mut self.data)) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        self.has_data = false;
        Some(SseEvent {
            event: self.event.take(),
            data,
            id: self.id.clone(),
            retry: self.retry.take(),
        })
    }
}

/// The end marker OpenAI clients expect: `data: [DONE]\n\n`.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Appends `data: <payload>\n\n` to `out`. A payload with newlines becomes
/// several `data:` lines, so any text round-trips.
pub fn write_data(out: &mut BytesMut, payload: &[u8]) {
    write_event(out, None, payload);
}

/// Appends a named event (`event: <name>\ndata: <payload>\n\n`) to `out`.
pub fn write_event(out: &mut BytesMut, name: Option<&str>, payload: &[u8]) {
    out.reserve(payload.len() + 16 + name.map_or(0, str::len));
    if let Some(name) = name {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    let mut lines = payload.split(|&b| b == b'\n');
    // `split` always yields at least one item.
    for line in lines.by_ref() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// Encodes one `data:` event as bytes.
pub fn encode_data(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    write_data(&mut out, payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut dec = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            dec.push(c);
            while let Some(ev) = dec.next_event().unwrap() {
                out.push(ev);
            }
        }
        while let Some(ev) = dec.finish().unwrap() {
            out.push(ev);
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: None,
            retry: None,
        }
    }

    #[test]
    fn line_endings_comments_and_multiline() {
        let input = b"\xEF\xBB\xBF: hello\r\nevent: a\r\ndata: 1\r\ndata:2\r\n\r\ndata: x\rdata: y\r\rdata: z\n\n";
        assert_eq!(
            decode_all(&[input]),
            vec![ev(Some("a"), "1\n2"), ev(None, "x\ny"), ev(None, "z")]
        );
    }

    #[test]
    fn cr_then_lf_in_next_read_is_one_line_end() {
        let got = decode_all(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(got, vec![ev(None, "a"), ev(None, "b")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let got = decode_all(&[b"event: ping\n\ndata: 1\n\n"]);
        assert_eq!(got, vec![ev(None, "1")]);
    }

    #[test]
    fn eof_without_blank_line_dispatches_pending_data() {
        assert_eq!(
            decode_all(&[b"data: {\"a\":1}"]),
            vec![ev(None, "{\"a\":1}")]
        );
        assert_eq!(
            decode_all(&[b"data: {\"a\":1}\n"]),
            vec![ev(None, "{\"a\":1}")]
        );
    }

    #[test]
    fn id_and_retry_fields() {
        let got = decode_all(&[b"id: 7\nretry: 300\ndata: x\n\n"]);
        assert_eq!(got[0].id.as_deref(), Some("7"));
        assert_eq!(got[0].retry, Some(300));
    }

    #[test]
    fn oversized_event_is_an_error_not_unbounded_memory() {
        let mut dec = SseDecoder::with_max_event_bytes(64);
        dec.push(b"data: ");
        dec.push(&[b'a'; 100]);
        assert_eq!(dec.next_event(), Err(EventTooLarge { limit: 64 }));
        let mut dec = SseDecoder::with_max_event_bytes(64);
        for _ in 0..20 {
            dec.push(b"data: aaaaaaa\n");
        }
        assert!(dec.next_event().is_err());
    }

    #[test]
    fn encoder_round_trips_multiline_payloads() {
        let mut out = BytesMut::new();
        write_event(&mut out, Some("message_start"), b"{\"a\":\n1}");
        write_data(&mut out, b"plain");
        assert_eq!(
            &out[..],
            b"event: message_start\ndata: {\"a\":\ndata: 1}\n\ndata: plain\n\n"
        );
        assert_eq!(
            decode_all(&[&out]),
            vec![ev(Some("message_start"), "{\"a\":\n1}"), ev(None, "plain")]
        );
    }

    #[test]
    fn recorded_fixtures_decode_the_same_in_one_read() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/protocols");
        let mut checked = 0;
        for entry in walk(std::path::Path::new(dir)) {
            if !entry.to_string_lossy().ends_with(".sse.txt") {
                continue;
            }
            let bytes = std::fs::read(&entry).unwrap();
            let events = decode_all(&[&bytes]);
            assert!(!events.is_empty(), "{}", entry.display());
            let split: Vec<&[u8]> = bytes.chunks(7).collect();
            assert_eq!(decode_all(&split), events, "{}", entry.display());
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} SSE fixtures found");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    fn arb_event() -> impl Strategy<Value = (Option<String>, Vec<String>)> {
        (
            proptest::option::of("[a-z_]{1,12}"),
            proptest::collection::vec("[^\r\n]{0,24}", 1..4),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_split_decodes_the_same(
            events in proptest::collection::vec(arb_event(), 1..6),
            eol in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            comments in any::<bool>(),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        ) {
            let mut text = String::new();
            let mut expected = Vec::new();
            for (name, lines) in &events {
                if comments {
                    text.push_str(": keep-alive");
                    text.push_str(eol);
                }
                if let Some(n) = name {
                    text.push_str("event: ");
                    text.push_str(n);
                    text.push_str(eol);
                }
                for l in lines {
                    text.push_str("data: ");
                    text.push_str(l);
                    text.push_str(eol);
                }
                text.push_str(eol);
                // One optional space after the colon is stripped.
                let data: Vec<String> = lines.to_vec();
                expected.push(ev(name.as_deref(), &data.join("\n")));
            }
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            points.dedup();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(decode_all(&chunks), expected.clone());
            // Byte-at-a-time is the harshest split of all.
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(decode_all(&singles), expected);
        }
    }
}
