//! The events' JSON, compressed one by one with zstd and a dictionary trained on this node's
//! first events.
//!
//! One event is a few hundred bytes to a few KiB of JSON whose keys and much of whose values
//! (the node, the parent, the capabilities, the namespaces) repeat from event to event. Alone,
//! zstd finds little of that inside one event; with a dictionary made of earlier events it
//! finds most of it (the figures are in BENCHMARKS.md), and each event still decompresses
//! alone, so a search reads only the events it returns. Events written before the dictionary
//! exists are compressed without one (dictionary id 0).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use crate::StoreError;

/// zstd's level. With the dictionary, level 3 made the agent's own exec and exit events no
/// smaller than level 1 (89 B each) and took 2.6 µs for each against 1.8; on the generated
/// events of `make bench`, 6 % smaller. The writer's CPU is what a storm competes with.
const LEVEL: i32 = 1;
/// Events collected before the dictionary is trained ...
const TRAIN_SAMPLES: usize = 4000;
/// ... or fewer, once they weigh this much: what the samples hold until training is bounded
/// whatever the events (4,000 events of long arguments and paths would be hundreds of MiB).
/// 4,000 of the bench's 5 KiB open events weigh about 20 MiB; 4 MiB of them trained as good a
/// dictionary, 2 MiB a much worse one.
const TRAIN_BYTES: usize = 16 << 20;
/// How long a dictionary's training waits for the writer to be idle: a busy node gets its
/// dictionary this late at worst.
const TRAIN_WAIT: Duration = Duration::from_secs(60);
/// Trainings tried before the writer gives up on a dictionary for this run.
const MAX_TRAININGS: u32 = 3;
/// The dictionary's size.
const DICT_BYTES: usize = 64 * 1024;
/// The largest event read back: a stored event that claims more is damaged (or planted).
pub(crate) const MAX_EVENT_BYTES: usize = 16 << 20;

/// The writer's compressor: without a dictionary until it has trained one.
pub(crate) struct Compressor {
    dict_id: i64,
    with_dict: Option<zstd::bulk::Compressor<'static>>,
    plain: zstd::bulk::Compressor<'static>,
    samples: Vec<Vec<u8>>,
    sample_bytes: usize,
    /// When the samples were all in.
    ready: Option<Instant>,
    failed_trainings: u32,
}

impl Compressor {
    /// The compressor with the database's newest dictionary, if it has one.
    pub(crate) fn load(conn: &Connection) -> Result<Compressor, StoreError> {
        let newest: Option<(i64, Vec<u8>)> = conn
            .query_row(
                "SELECT id, dict FROM dicts ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let plain = zstd::bulk::Compressor::new(LEVEL).map_err(zstd_error)?;
        let (dict_id, with_dict) = match newest {
            Some((id, dict)) => (
                id,
                Some(zstd::bulk::Compressor::with_dictionary(LEVEL, &dict).map_err(zstd_error)?),
            ),
            None => (0, None),
        };
        Ok(Compressor {
            dict_id,
            with_dict,
            plain,
            samples: Vec::new(),
            sample_bytes: 0,
            ready: None,
            failed_trainings: 0,
        })
    }

    /// Compresses `json` to the end of `out`; returns the dictionary id it used.
    pub(crate) fn compress_into(
        &mut self,
        json: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<i64, StoreError> {
        let (id, c) = match self.with_dict.as_mut() {
            Some(c) => (self.dict_id, c),
            None => {
                if self.ready.is_none() && self.failed_trainings < MAX_TRAININGS {
                    self.samples.push(json.to_vec());
                    self.sample_bytes += json.len();
                    if self.samples.len() >= TRAIN_SAMPLES || self.sample_bytes >= TRAIN_BYTES {
                        self.ready = Some(Instant::now());
                    }
                }
                (0, &mut self.plain)
            }
        };
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(json.len()));
        let mut end = std::io::Cursor::new(std::mem::take(out));
        end.set_position(start as u64);
        let written = c.compress_to_buffer(json, &mut end);
        *out = end.into_inner();
        written.map_err(zstd_error)?;
        Ok(id)
    }

    /// Trains and stores the dictionary once enough events were seen and the writer is
    /// `idle` (nothing queued, no transaction open), or has not been for [`TRAIN_WAIT`].
    /// Training on 4,000 open events takes about 0.4 s of the writer's CPU: in a storm, that
    /// is CPU the agent's loop competes with (a fifth of the writer's time while the bench's
    /// backlogs drained, each round a new store), and a burst is when a new node's first
    /// events come.
    pub(crate) fn train_when_due(
        &mut self,
        conn: &Connection,
        idle: bool,
    ) -> Result<(), StoreError> {
        match self.ready {
            Some(ready) if idle || ready.elapsed() >= TRAIN_WAIT => {}
            _ => return Ok(()),
        }
        let samples = std::mem::take(&mut self.samples);
        (self.sample_bytes, self.ready) = (0, None);
        // Samples zstd cannot train on (too alike, too few): events are stored without a
        // dictionary, and later ones sampled again, a few times only (each try costs the
        // writer a training).
        let dict = match zstd::dict::from_samples(&samples, DICT_BYTES) {
            Ok(dict) => dict,
            Err(e) => {
                self.failed_trainings += 1;
                return Err(StoreError::Dictionary {
                    reason: format!(
                        "none from {} events ({e}); {}",
                        samples.len(),
                        if self.failed_trainings < MAX_TRAININGS {
                            "sampling later events"
                        } else {
                            "events are compressed without one"
                        }
                    ),
                });
            }
        };
        conn.execute("INSERT INTO dicts(dict) VALUES (?1)", params![dict])?;
        self.dict_id = conn.last_insert_rowid();
        self.with_dict =
            Some(zstd::bulk::Compressor::with_dictionary(LEVEL, &dict).map_err(zstd_error)?);
        Ok(())
    }
}

pub(crate) fn zstd_error(e: std::io::Error) -> StoreError {
    StoreError::Corrupt {
        id: 0,
        reason: format!("zstd: {e}"),
    }
}

/// The readers' decompressors, one per dictionary, loaded as events need them.
#[derive(Default)]
pub(crate) struct Decompressors {
    by_dict: HashMap<i64, zstd::bulk::Decompressor<'static>>,
}

impl Decompressors {
    /// The JSON of event `id`, stored with dictionary `dict`.
    pub(crate) fn decompress(
        &mut self,
        conn: &Connection,
        id: i64,
        dict: i64,
        bytes: &[u8],
    ) -> Result<String, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { id, reason };
        let d = match self.by_dict.entry(dict) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let d = if dict == 0 {
                    zstd::bulk::Decompressor::new()
                } else {
                    let raw: Vec<u8> = conn
                        .query_row("SELECT dict FROM dicts WHERE id = ?1", [dict], |r| r.get(0))
                        .map_err(|e| corrupt(format!("its dictionary {dict}: {e}")))?;
                    zstd::bulk::Decompressor::with_dictionary(&raw)
                }
                .map_err(|e| corrupt(e.to_string()))?;
                e.insert(d)
            }
        };
        let size = zstd::zstd_safe::get_frame_content_size(bytes)
            .ok()
            .flatten()
            .ok_or_else(|| corrupt("no content size in its frame".into()))?;
        if size > MAX_EVENT_BYTES as u64 {
            return Err(corrupt(format!("it claims {size} bytes")));
        }
        let out = d
            .decompress(bytes, size as usize)
            .map_err(|e| corrupt(e.to_string()))?;
        String::from_utf8(out).map_err(|e| corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_zstd_cannot_train_on_are_said_and_given_up_after_a_few_tries() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE dicts(id INTEGER PRIMARY KEY, dict BLOB NOT NULL)")
            .unwrap();
        let mut c = Compressor::load(&conn).unwrap();
        let mut out = Vec::new();
        for round in 1..=MAX_TRAININGS {
            // Not ready: nothing to train, idle or not.
            c.train_when_due(&conn, true).unwrap();
            // Empty events: nothing to train on.
            for _ in 0..TRAIN_SAMPLES {
                assert_eq!(c.compress_into(b"", &mut out).unwrap(), 0);
            }
            let e = c.train_when_due(&conn, true).unwrap_err().to_string();
            let next = if round < MAX_TRAININGS {
                "sampling later"
            } else {
                "without one"
            };
            assert!(
                e.contains("none from 4000 events") && e.contains(next),
                "{e}"
            );
        }
        // Given up: no more samples kept, no more training.
        for _ in 0..TRAIN_SAMPLES {
            c.compress_into(b"{}", &mut out).unwrap();
        }
        assert!(c.samples.is_empty() && c.ready.is_none());
        c.train_when_due(&conn, true).unwrap();
    }
}
