//! [`SseStreamDecoder`]: a [`StreamDecoder`] for providers that stream SSE.

use super::StreamDecoder;
use crate::error::{Error, ErrorKind};
use crate::sse::{SseDecoder, SseEvent};
use crate::types::ChatChunk;
use std::collections::VecDeque;

/// Turns one provider's SSE events into OpenAI chunks.
pub trait EventTranslator: Send + 'static {
    /// Handles one event.
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<ChatChunk>) -> Result<(), Error>;

    /// The body ended; `Err` if the stream was cut before its proper end.
    fn end(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error>;

    /// Whether the provider's end marker was seen.
    fn is_done(&self) -> bool;
}

/// SSE framing plus an [`EventTranslator`].
pub struct SseStreamDecoder<T> {
    sse: SseDecoder,
    translator: T,
}

impl<T: EventTranslator> SseStreamDecoder<T> {
    /// Wraps a translator.
    pub fn new(translator: T) -> Self {
        SseStreamDecoder {
            sse: SseDecoder::new(),
            translator,
        }
    }
}

fn too_large(e: crate::sse::EventTooLarge) -> Error {
    Error::new(ErrorKind::BadGateway, format!("the upstream sent a {e}"))
}

impl<T: EventTranslator> StreamDecoder for SseStreamDecoder<T> {
    fn feed(&mut self, bytes: &[u8], out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        self.sse.push(bytes);
        while let Some(ev) = self.sse.next_event().map_err(too_large)? {
            self.translator.event(ev, out)?;
            if self.translator.is_done() {
                break;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        while !self.translator.is_done() {
            match self.sse.finish().map_err(too_large)? {
                // An event without its closing blank line: if it does not parse,
                // the connection was cut in the middle of it.
                Some(ev) => self.translator.event(ev, out).map_err(|e| {
                    if e.kind() == ErrorKind::BadGateway {
                        Error::new(
                            ErrorKind::Connection,
                            "the upstream closed the stream in the middle of an event",
                        )
                    } else {
                        e
                    }
                })?,
                None => break,
            }
        }
        self.translator.end(out)
    }

    fn is_done(&self) -> bool {
        self.translator.is_done()
    }
}
