//! Avro single-object encoding framing.
//!
//! ```text
//! +------+------+----------------------------+-------------------+
//! | 0xC3 | 0x01 | CRC-64-AVRO fingerprint    | Avro binary datum |
//! |      |      | of the writer schema, 8 B, |                   |
//! |      |      | little endian              |                   |
//! +------+------+----------------------------+-------------------+
//! ```
//!
//! See <https://avro.apache.org/docs/1.12.0/specification/#single-object-encoding>.
//! A Confluent-framed message (magic byte `0x00` and a 4-byte registry id)
//! starts differently, so a decoder for both formats can dispatch on the
//! first byte.

use crate::error::DecodeError;

/// The two marker bytes that start every single-object encoded message.
pub const MARKER: [u8; 2] = [0xC3, 0x01];

/// Length of the header: marker plus fingerprint.
pub const HEADER_LEN: usize = 10;

/// Appends the header for a datum written with the schema of `fingerprint`.
pub fn write_header(fingerprint: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&fingerprint.to_le_bytes());
}

/// Splits a message into the writer schema's fingerprint and the datum.
///
/// # Errors
/// [`DecodeError::BadMarker`] if the bytes present do not match the marker,
/// [`DecodeError::Truncated`] if the header is incomplete.
pub fn split_header(message: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    let marker_len = message.len().min(MARKER.len());
    if message[..marker_len] != MARKER[..marker_len] {
        return Err(DecodeError::BadMarker {
            found: message[..marker_len].to_vec(),
        });
    }
    match (message.get(2..HEADER_LEN), message.get(HEADER_LEN..)) {
        (Some(fingerprint), Some(datum)) => {
            let mut le = [0u8; 8];
            le.copy_from_slice(fingerprint);
            Ok((u64::from_le_bytes(le), datum))
        }
        _ => Err(DecodeError::Truncated {
            len: message.len(),
            detail: "the single-object header needs 10 bytes",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let mut out = Vec::new();
        write_header(0x0102_0304_0506_0708, &mut out);
        assert_eq!(out, [0xC3, 0x01, 8, 7, 6, 5, 4, 3, 2, 1]);
        out.extend_from_slice(b"datum");
        assert_eq!(
            split_header(&out).unwrap(),
            (0x0102_0304_0506_0708, &b"datum"[..])
        );
    }

    #[test]
    fn empty_datum_is_allowed_by_the_framing() {
        let mut out = Vec::new();
        write_header(7, &mut out);
        assert_eq!(split_header(&out).unwrap(), (7, &[][..]));
    }

    #[test]
    fn short_or_wrong_headers() {
        assert!(matches!(
            split_header(&[]),
            Err(DecodeError::Truncated { len: 0, .. })
        ));
        assert!(matches!(
            split_header(&[0xC3]),
            Err(DecodeError::Truncated { len: 1, .. })
        ));
        assert_eq!(
            split_header(&[0x00]),
            Err(DecodeError::BadMarker { found: vec![0x00] })
        );
        // Confluent wire format: magic 0, then a schema id.
        assert_eq!(
            split_header(&[0x00, 0, 0, 0, 1, 2, 3]),
            Err(DecodeError::BadMarker {
                found: vec![0x00, 0x00]
            })
        );
        assert_eq!(
            split_header(&[0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::BadMarker {
                found: vec![0xC3, 0x02]
            })
        );
        for len in 2..HEADER_LEN {
            let mut m = vec![0xC3, 0x01];
            m.resize(len, 0);
            assert!(matches!(
                split_header(&m),
                Err(DecodeError::Truncated { .. })
            ));
        }
    }
}
