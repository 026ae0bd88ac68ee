//! Azure OpenAI stream events → OpenAI chunks.
//!
//! The events already are OpenAI chunks, with three Azure habits smoothed out:
//! the first event (`choices: []`, empty `id`/`model`, `created: 0`, only
//! `prompt_filter_results`) is not forwarded — its filter results are attached
//! to the next chunk; chunks with an empty id, model or creation time (the
//! asynchronous-filter annotations) get the stream's; and the usage chunk is
//! held back until the end so that it is always the last chunk.

use crate::Secret;
use crate::error::{Error, ErrorKind};
use crate::provider::openai::{bad_upstream_json, in_band_error};
use crate::provider::sse_stream::EventTranslator;
use crate::sse::SseEvent;
use crate::types::ChatChunk;
use serde_json::value::RawValue;
use std::collections::VecDeque;

/// Translates Azure OpenAI SSE events (see the [module docs](self)).
#[derive(Debug)]
pub struct AzureChunkTranslator {
    secrets: Vec<Secret>,
    ident: Option<(String, String, i64)>,
    prompt_filter: Option<Box<RawValue>>,
    usage: Option<ChatChunk>,
    finished: bool,
    done: bool,
}

impl AzureChunkTranslator {
    /// A translator that scrubs `secrets` from in-stream errors.
    pub fn new(secrets: Vec<Secret>) -> Self {
        AzureChunkTranslator {
            secrets,
            ident: None,
            prompt_filter: None,
            usage: None,
            finished: false,
            done: false,
        }
    }

    fn stamp(&mut self, chunk: &mut ChatChunk) {
        match &self.ident {
            Some((id, model, created)) => {
                if chunk.id.is_empty() {
                    chunk.id.clone_from(id);
                }
                if chunk.model.is_empty() {
                    chunk.model.clone_from(model);
                }
                if chunk.created == 0 {
                    chunk.created = *created;
                }
            }
            None if !chunk.id.is_empty() => {
                self.ident = Some((chunk.id.clone(), chunk.model.clone(), chunk.created));
            }
            None => {}
        }
        if chunk.object.is_empty() {
            chunk.object = "chat.completion.chunk".to_owned();
        }
    }

    fn flush(&mut self, out: &mut VecDeque<ChatChunk>) {
        if let Some(mut usage) = self.usage.take() {
            self.stamp(&mut usage);
            out.push_back(usage);
        }
    }
}

impl EventTranslator for AzureChunkTranslator {
    fn event(&mut self, event: SseEvent, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if event.is_done() {
            self.done = true;
            self.flush(out);
            return Ok(());
        }
        if event.event.as_deref() == Some("error") {
            return Err(in_band_error(event.data.as_bytes(), &self.secrets));
        }
        let mut chunk: ChatChunk =
            serde_json::from_str(&event.data).map_err(|e| bad_upstream_json("stream chunk", &e))?;
        if chunk.extra.contains("error") {
            return Err(in_band_error(event.data.as_bytes(), &self.secrets));
        }
        if chunk.choices.is_empty() && chunk.usage.is_none() {
            // The prompt-filter announcement: keep its results for the next chunk.
            if let Some(pf) = chunk.extra.remove("prompt_filter_results") {
                self.prompt_filter = Some(pf);
            }
            return Ok(());
        }
        self.stamp(&mut chunk);
        if let Some(pf) = self.prompt_filter.take() {
            chunk.extra.insert_raw("prompt_filter_results", pf);
        }
        if chunk.is_usage_only() {
            self.usage = Some(chunk);
            return Ok(());
        }
        if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
            self.finished = true;
        }
        out.push_back(chunk);
        Ok(())
    }

    fn end(&mut self, out: &mut VecDeque<ChatChunk>) -> Result<(), Error> {
        if self.done || self.finished {
            self.flush(out);
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Connection,
            "the upstream closed the stream before it finished",
        ))
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
