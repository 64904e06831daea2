//! The transactional outbox: directory changes written in the transaction
//! that produced them, published after it committed.
//!
//! A chunk of persons written together gets one outbox row for all its
//! changes (a *pack*), not one per change: one row inserted and later
//! deleted for up to [`ROWS`] changes. A row that
//! holds a change flagged for the fast lane is marked (`priority` 1), so
//! that the publisher finds it through a partial index ahead of
//! everything else, and marked again (2) once those changes were sent to
//! the priority topic; the whole row then waits for the main topic.
//!
//! A pack's payload is a format byte, then its body: the number of
//! changes, then each change as a flag byte (1: also to the priority
//! topic), its person id, its encoded `DirectoryChange` and its
//! `traceparent` (absent, or the text), each as a little-endian `u32`
//! length and the bytes (the trace's length is stored plus one, zero for
//! none). The body is LZ4 block-compressed (format 2), its length first
//! as a little-endian `u32`: the changes of a chunk repeat the same names,
//! and compress about fourfold, so the database stores, logs and later
//! deletes a quarter of the bytes.

use sqlx::Row;

use super::{BatchTx, Store, ROWS};
use crate::error::{ProjectError, Result};

/// `projector_outbox.priority`: also goes to the priority topic, not sent
/// there yet (0: main topic only).
const PRIORITY_UNSENT: i64 = 1;
/// `projector_outbox.priority`: the priority copy was sent; the row waits
/// for the main topic.
const PRIORITY_SENT: i64 = 2;

/// Outbox rows updated or deleted per statement (one bind each).
const SEQS_PER_STATEMENT: usize = 1000;

/// The first byte of a pack's payload: its body LZ4-compressed.
const PACK_LZ4: u8 = 2;
/// The largest pack body read back (far above a chunk's changes): a
/// damaged length must not allocate gigabytes.
const MAX_PACK_BODY: usize = 64 << 20;

/// A directory change waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The outbox row it is stored in: the order of the outbox. The changes
    /// of one pack share it, and are published and deleted together.
    pub seq: i64,
    /// Kafka key.
    pub person_id: String,
    /// Encoded `DirectoryChange`.
    pub payload: Vec<u8>,
    /// Also goes to the priority lane, and has not been sent there yet.
    pub priority: bool,
    /// The trace of the event that caused it (W3C `traceparent`).
    pub traceparent: Option<String>,
}

/// A directory change for the outbox, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// Kafka key.
    pub(crate) person_id: String,
    /// Encoded `DirectoryChange`.
    pub(crate) payload: Vec<u8>,
    /// Also goes to the priority lane.
    pub(crate) priority: bool,
    /// The trace of the event that caused it.
    pub(crate) traceparent: Option<String>,
}

/// A chunk's changes, encoded for the outbox.
#[derive(Debug)]
pub(crate) struct Pack {
    changes: Vec<Change>,
    payload: Vec<u8>,
}

impl Pack {
    /// Encodes `changes` (one chunk of persons, at most one change each);
    /// CPU work, done beside the database's.
    pub(crate) fn new(changes: Vec<Change>) -> Self {
        debug_assert!(changes.len() <= ROWS, "one chunk of persons at a time");
        // A chunk without changes writes no row (see `insert`).
        let payload = if changes.is_empty() {
            Vec::new()
        } else {
            encode_pack(&changes)
        };
        Pack { changes, payload }
    }

    /// How many of them also go to the priority topic.
    pub(crate) fn priority_changes(&self) -> usize {
        self.changes.iter().filter(|c| c.priority).count()
    }
}

impl BatchTx {
    /// Writes `pack` into the outbox as one row. Returns its changes as
    /// stored.
    pub(crate) async fn insert_pack(&mut self, pack: Pack, now_ms: i64) -> Result<Vec<OutboxRow>> {
        insert(self.get().await?, pack, now_ms).await
    }
}

async fn insert(tx: &mut super::Tx, pack: Pack, now_ms: i64) -> Result<Vec<OutboxRow>> {
    if pack.changes.is_empty() {
        return Ok(Vec::new());
    }
    let priority = if pack.priority_changes() > 0 {
        PRIORITY_UNSENT
    } else {
        0
    };
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO projector_outbox (payload, priority, created_at_ms, changes) \
         VALUES ($1, $2, $3, $4) RETURNING seq",
    )
    .bind(pack.payload)
    .bind(priority)
    .bind(now_ms)
    .bind(pack.changes.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    Ok(pack.changes.into_iter().map(|c| stored(seq, c)).collect())
}

fn stored(seq: i64, c: Change) -> OutboxRow {
    OutboxRow {
        seq,
        person_id: c.person_id,
        payload: c.payload,
        priority: c.priority,
        traceparent: c.traceparent,
    }
}

impl Store {
    /// The oldest outbox rows' changes, whole rows only, until there are
    /// at least `limit` changes (or the outbox ends).
    pub(crate) async fn outbox(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        unpack_rows(whole_rows(self.db.pool(), "", limit).await?)
    }

    /// The changes whose priority copy has not been sent, from the oldest
    /// rows holding any, however many other rows are ahead of them; whole
    /// rows, until there are at least `limit` changes in them.
    pub(crate) async fn outbox_priority(&self, limit: i64) -> Result<Vec<OutboxRow>> {
        let filter = format!("WHERE priority = {PRIORITY_UNSENT}");
        let rows = whole_rows(self.db.pool(), &filter, limit).await?;
        let mut changes = unpack_rows(rows)?;
        changes.retain(|c| c.priority);
        Ok(changes)
    }

    /// Records that the priority copies of rows `seqs` were sent.
    pub(crate) async fn priority_sent(&self, seqs: &[i64]) -> Result<()> {
        let statement =
            format!("UPDATE projector_outbox SET priority = {PRIORITY_SENT} WHERE seq IN");
        by_seq(self.db.pool(), &statement, seqs).await
    }

    /// Deletes rows `seqs` (a pack's seq may be named once per change).
    pub(crate) async fn delete_outbox(&self, seqs: &[i64]) -> Result<()> {
        by_seq(
            self.db.pool(),
            "DELETE FROM projector_outbox WHERE seq IN",
            seqs,
        )
        .await
    }
}

/// The oldest rows (of those `filter` selects) that begin before the
/// `limit`th change: the first `limit` rows hold at least that many.
async fn whole_rows(
    pool: &sqlx::AnyPool,
    filter: &str,
    limit: i64,
) -> Result<Vec<sqlx::any::AnyRow>> {
    let sql = format!(
        "WITH head AS (SELECT seq, changes FROM projector_outbox {filter} ORDER BY seq LIMIT $1), \
         counted AS (SELECT seq, SUM(changes) OVER (ORDER BY seq) - changes AS before FROM head) \
         SELECT o.seq, o.payload, o.priority \
         FROM projector_outbox o JOIN counted c ON c.seq = o.seq WHERE c.before < $2 \
         ORDER BY o.seq"
    );
    Ok(sqlx::query(&sql)
        .bind(limit)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

fn unpack_rows(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<OutboxRow>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let payload: Vec<u8> = r.try_get(1)?;
        // Once a row's priority copies were sent, its changes go to the
        // main topic only.
        let unsent = r.try_get::<i64, _>(2)? == PRIORITY_UNSENT;
        let changes = decode_pack(&payload).map_err(|reason| ProjectError::CorruptOutbox {
            seq,
            reason: reason.to_owned(),
        })?;
        out.extend(changes.into_iter().map(|mut c| {
            c.priority &= unsent;
            stored(seq, c)
        }));
    }
    Ok(out)
}

/// Runs `statement` (ending in `WHERE seq IN`) over the rows `seqs`, a
/// chunk of them per statement.
async fn by_seq(pool: &sqlx::AnyPool, statement: &str, seqs: &[i64]) -> Result<()> {
    let mut seqs = seqs.to_vec();
    seqs.sort_unstable();
    seqs.dedup();
    for chunk in seqs.chunks(SEQS_PER_STATEMENT) {
        let slots = hrsync_store::padded_rows(chunk.len(), SEQS_PER_STATEMENT);
        let sql = format!("{statement} ({})", hrsync_store::placeholders(slots, 1));
        let mut query = sqlx::query(&sql);
        for seq in hrsync_store::repeat_last(chunk, slots) {
            query = query.bind(*seq);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// A pack's payload (format 2).
fn encode_pack(changes: &[Change]) -> Vec<u8> {
    let body = encode_body(changes);
    let mut out = Vec::with_capacity(1 + 4 + body.len() / 2);
    out.push(PACK_LZ4);
    out.extend(lz4_flex::block::compress_prepend_size(&body));
    out
}

/// A pack's body: the count, then the changes.
fn encode_body(changes: &[Change]) -> Vec<u8> {
    let size: usize = changes
        .iter()
        .map(|c| {
            13 + c.person_id.len() + c.payload.len() + c.traceparent.as_ref().map_or(0, String::len)
        })
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    put_len(&mut out, changes.len());
    for c in changes {
        out.push(u8::from(c.priority));
        put_len(&mut out, c.person_id.len());
        out.extend_from_slice(c.person_id.as_bytes());
        put_len(&mut out, c.payload.len());
        out.extend_from_slice(&c.payload);
        match &c.traceparent {
            Some(trace) => {
                put_len(&mut out, trace.len() + 1);
                out.extend_from_slice(trace.as_bytes());
            }
            None => put_len(&mut out, 0),
        }
    }
    out
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths are of ids, one encoded change and a trace header: far below
    // 4 GiB.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// The changes in a pack's payload.
fn decode_pack(payload: &[u8]) -> Result<Vec<Change>, &'static str> {
    match payload.split_first() {
        None => Err("empty pack"),
        Some((&PACK_LZ4, mut compressed)) => {
            let size = take_len(&mut compressed)?;
            if size > MAX_PACK_BODY {
                return Err("body length out of range");
            }
            let body = lz4_flex::block::decompress(compressed, size)
                .map_err(|_| "compressed body damaged")?;
            decode_body(&body)
        }
        Some(_) => Err("unknown pack format"),
    }
}

/// The changes in a pack's body.
fn decode_body(mut bytes: &[u8]) -> Result<Vec<Change>, &'static str> {
    let count = take_len(&mut bytes)?;
    let mut changes = Vec::with_capacity(count.min(ROWS));
    for _ in 0..count {
        let priority = match take_n(&mut bytes, 1, "truncated in a change's flags")? {
            [0] => false,
            [1] => true,
            _ => return Err("unknown change flags"),
        };
        let person = take(&mut bytes, "truncated in a person id")?;
        let person_id = String::from_utf8(person.to_vec()).map_err(|_| "person id not UTF-8")?;
        let payload = take(&mut bytes, "truncated in a payload")?.to_vec();
        let traceparent = match take_len(&mut bytes)? {
            0 => None,
            n => {
                let trace = take_n(&mut bytes, n - 1, "truncated in a traceparent")?;
                Some(String::from_utf8(trace.to_vec()).map_err(|_| "traceparent not UTF-8")?)
            }
        };
        changes.push(Change {
            person_id,
            payload,
            priority,
            traceparent,
        });
    }
    if !bytes.is_empty() {
        return Err("bytes after the last change");
    }
    Ok(changes)
}

fn take_len(bytes: &mut &[u8]) -> Result<usize, &'static str> {
    let raw = take_n(bytes, 4, "truncated in a length")?;
    let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    usize::try_from(len).map_err(|_| "length out of range")
}

/// A length and that many bytes.
fn take<'a>(bytes: &mut &'a [u8], truncated: &'static str) -> Result<&'a [u8], &'static str> {
    let len = take_len(bytes)?;
    take_n(bytes, len, truncated)
}

/// The next `n` bytes; `truncated` says where they ran out.
fn take_n<'a>(
    bytes: &mut &'a [u8],
    n: usize,
    truncated: &'static str,
) -> Result<&'a [u8], &'static str> {
    if bytes.len() < n {
        return Err(truncated);
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(i: usize, trace: Option<&str>) -> Change {
        Change {
            person_id: format!("p-{i}"),
            payload: vec![i as u8; i],
            priority: i % 2 == 1,
            traceparent: trace.map(str::to_owned),
        }
    }

    #[test]
    fn a_pack_reads_back_as_written() {
        let changes = vec![
            change(0, None),
            change(
                3,
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ),
            change(7, Some("")),
            change(1, None),
        ];
        assert_eq!(decode_pack(&encode_pack(&changes)), Ok(changes));
        assert_eq!(decode_pack(&encode_pack(&[])), Ok(Vec::new()));
    }

    #[test]
    fn a_pack_of_repeated_names_is_stored_compressed() {
        let changes: Vec<Change> = (0..200)
            .map(|i| Change {
                person_id: format!("p-{i:032}"),
                payload: b"Everyone Customer Support People Managers zendesk slack".to_vec(),
                priority: false,
                traceparent: None,
            })
            .collect();
        let payload = encode_pack(&changes);
        assert_eq!(payload[0], PACK_LZ4);
        let body = encode_body(&changes);
        assert!(
            payload.len() * 3 < body.len(),
            "{} of {}",
            payload.len(),
            body.len()
        );
        assert_eq!(decode_pack(&payload), Ok(changes));
    }

    #[test]
    fn a_damaged_pack_is_an_error_not_a_shorter_list() {
        // A body damaged before it was compressed.
        let body = encode_body(&[change(2, Some("t")), change(5, None)]);
        let compressed = |body: &[u8]| {
            let mut pack = vec![PACK_LZ4];
            pack.extend(lz4_flex::block::compress_prepend_size(body));
            pack
        };
        for cut in 0..body.len() {
            assert!(
                decode_pack(&compressed(&body[..cut])).is_err(),
                "cut at {cut} of {} read as whole",
                body.len()
            );
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(
            decode_pack(&compressed(&longer)),
            Err("bytes after the last change")
        );
        let mut other = compressed(&body);
        other[0] = 1;
        assert_eq!(decode_pack(&other), Err("unknown pack format"));
        let compressed = encode_pack(&[change(2, Some("t")), change(5, None)]);
        for cut in 1..compressed.len() {
            assert!(decode_pack(&compressed[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = compressed;
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pack(&huge), Err("body length out of range"));
    }
}
