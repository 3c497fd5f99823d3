//! The 40-byte packed header in front of every remote message (`struct remote_header_v0`).

use super::error::WireError;

/// Size of the header on the wire.
pub const HEADER_LEN: usize = 40;
/// `ENDIAN_LOCAL`, written in the sender's byte order; a receiver seeing it swapped swaps every field.
pub const MAGIC: u32 = 0xBADA_DBBD;
/// `REMOTE_MSG_VERSION`.
pub const VERSION: u32 = 1;

/// A decoded header, fields in host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u64,
    pub flags: u64,
    pub size_total: u32,
    pub payload_offset: u32,
    pub payload_compressed: u32,
    pub payload_uncompressed: u32,
}

impl Header {
    /// Header for an uncompressed payload of `payload_len` bytes (including its trailing NUL).
    pub fn for_payload(id: u64, payload_len: u32) -> Header {
        Header {
            id,
            flags: 0,
            size_total: HEADER_LEN as u32 + payload_len,
            payload_offset: HEADER_LEN as u32,
            payload_compressed: 0,
            payload_uncompressed: payload_len,
        }
    }

    /// Little-endian encoding, as Pacemaker on x86-64/arm64 writes it.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..24].copy_from_slice(&self.flags.to_le_bytes());
        b[24..28].copy_from_slice(&self.size_total.to_le_bytes());
        b[28..32].copy_from_slice(&self.payload_offset.to_le_bytes());
        b[32..36].copy_from_slice(&self.payload_compressed.to_le_bytes());
        b[36..40].copy_from_slice(&self.payload_uncompressed.to_le_bytes());
        b
    }

    /// Decodes and checks a header in either byte order; `max_size` bounds `size_total`.
    pub fn parse(b: &[u8; HEADER_LEN], max_size: u32) -> Result<Header, WireError> {
        let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let little = if le == MAGIC {
            true
        } else if le.swap_bytes() == MAGIC {
            false
        } else {
            return Err(WireError::BadMagic(le));
        };
        let u32_at = |o: usize| {
            let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
            if little {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            if little {
                u64::from_le_bytes(a)
            } else {
                u64::from_be_bytes(a)
            }
        };
        let version = u32_at(4);
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let h = Header {
            id: u64_at(8),
            flags: u64_at(16),
            size_total: u32_at(24),
            payload_offset: u32_at(28),
            payload_compressed: u32_at(32),
            payload_uncompressed: u32_at(36),
        };
        if h.size_total > max_size {
            return Err(WireError::TooLarge {
                size: h.size_total,
                limit: max_size,
            });
        }
        if h.payload_compressed != 0 {
            // No Pacemaker sender compresses; accepting bzip2 would add a dependency for nothing.
            return Err(WireError::Compressed);
        }
        let end = u64::from(h.payload_offset) + u64::from(h.payload_uncompressed);
        // Every Pacemaker writes the payload right after its 40-byte header; 2.1.11+ refuses
        // anything else, and so do we (no skipping over bytes a sender did not describe).
        if h.payload_offset as usize != HEADER_LEN
            || h.payload_uncompressed == 0
            || end != u64::from(h.size_total)
        {
            return Err(WireError::BadSizes {
                size_total: h.size_total,
                payload_offset: h.payload_offset,
                payload_len: h.payload_uncompressed,
            });
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_little_endian() {
        let h = Header::for_payload(7, 129);
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &[0xBD, 0xDB, 0xDA, 0xBA]);
        assert_eq!(Header::parse(&b, 1 << 20).unwrap(), h);
        assert_eq!(h.size_total, 169);
    }

    #[test]
    fn accepts_big_endian_sender() {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&1u32.to_be_bytes());
        b[8..16].copy_from_slice(&9u64.to_be_bytes());
        b[24..28].copy_from_slice(&50u32.to_be_bytes());
        b[28..32].copy_from_slice(&40u32.to_be_bytes());
        b[36..40].copy_from_slice(&10u32.to_be_bytes());
        let h = Header::parse(&b, 1 << 20).unwrap();
        assert_eq!(h.id, 9);
        assert_eq!(h.payload_uncompressed, 10);
    }

    #[test]
    fn rejects_bad_input() {
        let good = Header::for_payload(1, 10).to_bytes();
        let mut b = good;
        b[0] = 0;
        assert!(matches!(
            Header::parse(&b, 1000),
            Err(WireError::BadMagic(_))
        ));
        let mut b = good;
        b[4] = 2;
        assert!(matches!(
            Header::parse(&b, 1000),
            Err(WireError::BadVersion(2))
        ));
        assert!(matches!(
            Header::parse(&good, 49),
            Err(WireError::TooLarge { .. })
        ));
        let mut b = good;
        b[36] = 11; // payload no longer adds up to size_total
        assert!(matches!(
            Header::parse(&b, 1000),
            Err(WireError::BadSizes { .. })
        ));
        let mut b = good;
        b[32] = 5;
        assert!(matches!(
            Header::parse(&b, 1000),
            Err(WireError::Compressed)
        ));
        // A payload further out that still adds up: 2.1.11+ refuses it, so do we.
        let mut b = Header::for_payload(1, 10).to_bytes();
        b[24..28].copy_from_slice(&60u32.to_le_bytes());
        b[28..32].copy_from_slice(&50u32.to_le_bytes());
        assert!(matches!(
            Header::parse(&b, 1000),
            Err(WireError::BadSizes { .. })
        ));
        // Sizes whose sum overflows 32 bits.
        let mut b = good;
        b[24..28].copy_from_slice(&49u32.to_le_bytes());
        b[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Header::parse(&b, u32::MAX),
            Err(WireError::BadSizes { .. })
        ));
        // The 20 MiB cap applies to the header's claim, before any payload arrives.
        let b = Header::for_payload(1, 20 * 1024 * 1024).to_bytes();
        assert!(matches!(
            Header::parse(&b, crate::wire::frame::DEFAULT_MAX_MESSAGE),
            Err(WireError::TooLarge { .. })
        ));
    }
}
