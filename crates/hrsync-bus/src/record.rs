use rdkafka::message::{BorrowedMessage, Headers, Message};

/// A consumed record, owned so handlers can keep it beyond the poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic it was read from.
    pub topic: String,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Record key (the employee or person id in hrsync topics).
    pub key: Option<Vec<u8>>,
    /// Record value, as produced.
    pub payload: Option<Vec<u8>>,
    /// Headers in order; values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Broker or producer timestamp in milliseconds, when present.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// Copies a consumed message.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    /// The first header named `name`, if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The key as UTF-8 text, if it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// Where the record came from, for logs and errors: `topic/partition@offset`.
    pub fn position(&self) -> String {
        format!("{}/{}@{}", self.topic, self.partition, self.offset)
    }
}
